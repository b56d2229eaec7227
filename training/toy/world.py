"""The toy world: identities that words cannot name. A subject is a random glyph, ``GLYPH_CELLS`` x ``GLYPH_CELLS``
cells in two or three colours of ``PALETTE``; a scene puts one glyph at one of 3 x 3 places, or two glyphs (left
and right column), on a plain low-saturation background; a glyph's reference is the glyph alone.

A caption says only where and on what: ``a [ref#2] at top left and a [ref#1] at bottom right on a gray
background`` (without placeholders: ``a glyph at ...``). Which reference is which glyph is known only through the
placeholders: two-glyph rows give the left glyph index 1 or 2 at random and name either first.

Held-out identities (``HELD_OUT``): ``HELD_OUT_GLYPHS`` glyphs freshly drawn from their own seed; training glyphs
are drawn from other seeds and a draw that equals a held-out glyph is drawn again, so no training scene, reference
or row ever shows one. There are over 10^6 glyphs, so every held-out glyph is a pattern the model never saw.

One cell is ``CELL`` native px, so a file's 16-px token holds exactly one cell (the token grid of the trainer and
the codec, ``training.toy.codec.ToyCodec``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dreamo_core.conditioning.placement import Box

from .constants import (
    CELL,
    GLYPH_CELLS,
    GLYPH_NATIVE,
    HELD_OUT_GLYPHS,
    HELD_OUT_SEED,
    NATIVE,
    PLACE_STEP,
    UPSCALE,
)

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35), "green": (35, 175, 55), "blue": (40, 70, 230), "yellow": (240, 205, 30),
    "magenta": (205, 45, 205), "cyan": (35, 200, 215)}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (150, 150, 150), "silver": (200, 200, 195), "slate": (105, 110, 120), "beige": (215, 205, 175),
    "sage": (165, 185, 170), "rose": (200, 175, 180)}
PALETTE_RGB = np.array(list(PALETTE.values()), np.uint8)  # (6, 3)
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")


@dataclass(frozen=True)
class Glyph:
    """An identity: ``cells`` (GLYPH_CELLS * GLYPH_CELLS,) palette indices, row-major (hashable)."""

    cells: tuple[int, ...]

    @property
    def grid(self) -> np.ndarray:
        """(GLYPH_CELLS, GLYPH_CELLS) palette indices."""
        return np.array(self.cells).reshape(GLYPH_CELLS, GLYPH_CELLS)

    def pixels(self) -> np.ndarray:
        """(GLYPH_NATIVE, GLYPH_NATIVE, 3) uint8 native pixels: each cell a CELL x CELL square of its colour."""
        return PALETTE_RGB[self.grid].repeat(CELL, 0).repeat(CELL, 1)


def random_glyph(rng: np.random.Generator) -> Glyph:
    """Two or three distinct palette colours (each used at least once), one per cell at random."""
    k = 2 + int(rng.random() < 0.5)
    while True:
        colors = rng.choice(len(PALETTE), size=k, replace=False)
        cells = colors[rng.integers(k, size=GLYPH_CELLS * GLYPH_CELLS)]
        if len(set(cells.tolist())) == k:
            return Glyph(tuple(int(c) for c in cells))


HELD_OUT: tuple[Glyph, ...] = tuple(random_glyph(np.random.default_rng(HELD_OUT_SEED + i)) for i in range(HELD_OUT_GLYPHS))


def training_glyph(rng: np.random.Generator) -> Glyph:
    """A random glyph that is not one of ``HELD_OUT`` (drawn again in the rare case it is)."""
    while True:
        glyph = random_glyph(rng)
        if glyph not in HELD_OUT:
            return glyph


Place = tuple[int, int]  # (row, column) of a glyph's top-left cell, in cells (= target tokens)
PLACES: tuple[Place, ...] = tuple((r * PLACE_STEP, c * PLACE_STEP) for r in range(3) for c in range(3))


def place_words(place: Place) -> str:
    """``top left`` ... ``bottom right``."""
    return f"{ROWS[place[0] // PLACE_STEP]} {COLUMNS[place[1] // PLACE_STEP]}"


def place_box(place: Place) -> Box:
    """The place as a fraction box of the scene: where a placed reference's ids go (DreamFuse's affine)."""
    cells = NATIVE // CELL
    return Box(place[1] / cells, place[0] / cells, GLYPH_CELLS / cells, GLYPH_CELLS / cells)


@dataclass
class Scene:
    """Native pixels (NATIVE, NATIVE, 3) uint8 with its glyphs (left to right), their places and footprints."""

    image: np.ndarray
    glyphs: list[Glyph]
    places: list[Place]
    background: str

    def mask(self, k: int) -> np.ndarray:
        """(NATIVE, NATIVE) bool footprint of glyph k."""
        m = np.zeros((NATIVE, NATIVE), bool)
        (r, c) = self.places[k]
        m[r * CELL : r * CELL + GLYPH_NATIVE, c * CELL : c * CELL + GLYPH_NATIVE] = True
        return m


def random_places(rng: np.random.Generator, n: int) -> list[Place]:
    """One glyph: any of the 3 x 3 places; two: the left and the right column, rows at random."""
    if n == 1:
        return [PLACES[int(rng.integers(len(PLACES)))]]
    return [(int(rng.integers(3)) * PLACE_STEP, 0), (int(rng.integers(3)) * PLACE_STEP, 2 * PLACE_STEP)]


def make_scene(rng: np.random.Generator, glyphs: list[Glyph]) -> Scene:
    """``glyphs`` (1 or 2, left to right) at random places on a random background."""
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    image = np.empty((NATIVE, NATIVE, 3), np.uint8)
    image[:] = BACKGROUNDS[background]
    places = random_places(rng, len(glyphs))
    for glyph, (r, c) in zip(glyphs, places):
        image[r * CELL : r * CELL + GLYPH_NATIVE, c * CELL : c * CELL + GLYPH_NATIVE] = glyph.pixels()
    return Scene(image, list(glyphs), places, background)


def caption(scene: Scene, names: list[str], order: list[int]) -> str:
    """``a {names[k]} at {place of k}`` for k in ``order``, joined by ``and``, then the background."""
    parts = [f"a {names[k]} at {place_words(scene.places[k])}" for k in order]
    return " and ".join(parts) + f" on a {scene.background} background"


def upscale(pixels: np.ndarray) -> np.ndarray:
    """(h, w[, c]) -> (UPSCALE h, UPSCALE w[, c]) by repetition (what the files hold)."""
    return pixels.repeat(UPSCALE, 0).repeat(UPSCALE, 1)


def downscale(pixels: np.ndarray) -> np.ndarray:
    """(UPSCALE h, UPSCALE w, c) float -> (h, w, c): the mean of each UPSCALE x UPSCALE block (inverse of upscale)."""
    h, w = pixels.shape[0] // UPSCALE, pixels.shape[1] // UPSCALE
    return pixels.reshape(h, UPSCALE, w, UPSCALE, -1).mean(axis=(1, 3))
