"""Scores of generated toy scenes, read by a program from the pixels (the toy's DINO / CLIP-I), and intervals.

``read_cells``: the mean colour of each of a glyph's cells at a place; ``classify``: the nearest tone of the world
(palette colours, then backgrounds) per cell. On one generated glyph against its reference:
- **cell accuracy**: share of the 16 cells drawn in the reference's colour (text-only chance is about 1/6: the
  base draws some glyph of two or three palette colours);
- **exact**: at least ``EXACT_CELLS`` of 16 cells right (>= 90 %);
- **retrieval**: the generated cells are nearest (RGB distance) to the own reference among the gallery of held-out
  glyphs (chance 1 / gallery size).
Two references (``pair_score``): **swap** (a place looks more like the other reference than its own), **blend** (a
place holds at least ``BLEND_CELLS`` cells in the other reference's colour where its own differs) and
**binding** (each identity at its captioned place: both places retrieve their own reference from the gallery,
and neither is blended).

Intervals: ``wilson`` (a rate over samples), ``bootstrap_difference`` (paired samples), ``seed_interval`` (a mean
over independent training seeds: Student's t on the seed means — the interval a rerun on another machine falls in).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import CELL, GLYPH_CELLS
from .world import BACKGROUNDS, PALETTE_RGB, Glyph, Place

EXACT_CELLS = 15  # of 16: "at least 90 % of the cells right"
BLEND_CELLS = 2  # cells in the other reference's colour that make a place blended
TONES = np.concatenate([PALETTE_RGB.astype(np.float64), np.array(list(BACKGROUNDS.values()), np.float64)])  # (12, 3)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}  # t(0.975, df)


def read_cells(image: np.ndarray, place: Place) -> np.ndarray:
    """(GLYPH_CELLS, GLYPH_CELLS, 3) mean colour (0..255) of the cells of a glyph at ``place`` in a native image
    (H, W, 3) in [0, 1]."""
    r, c = place
    block = np.asarray(image, np.float64)[r * CELL : (r + GLYPH_CELLS) * CELL, c * CELL : (c + GLYPH_CELLS) * CELL]
    return block.reshape(GLYPH_CELLS, CELL, GLYPH_CELLS, CELL, 3).mean(axis=(1, 3)) * 255.0


def classify(cells: np.ndarray) -> np.ndarray:
    """(..., 3) colours -> (...) index of the nearest tone (0..5 palette, 6.. a background)."""
    return ((cells[..., None, :] - TONES) ** 2).sum(-1).argmin(-1)


def cell_accuracy(image: np.ndarray, place: Place, glyph: Glyph) -> float:
    """Share of the glyph's cells drawn in its colour at ``place``."""
    return float((classify(read_cells(image, place)) == glyph.grid).mean())


def retrieved(image: np.ndarray, place: Place, glyph: Glyph, gallery: tuple[Glyph, ...]) -> bool:
    """The cells at ``place`` are nearer (summed squared RGB distance) to ``glyph`` than to any other of
    ``gallery`` (which holds ``glyph``)."""
    cells = read_cells(image, place)
    dist = [((cells - PALETTE_RGB[g.grid].astype(np.float64)) ** 2).sum() for g in gallery]
    return gallery[int(np.argmin(dist))] == glyph


@dataclass(frozen=True)
class PairScore:
    """Two references at their places: ``exact`` (both exact), ``swap``, ``blend``, ``found`` (both places retrieve
    their own reference), ``binding`` (found and not blended)."""

    exact: bool
    swap: bool
    blend: bool
    found: bool

    @property
    def binding(self) -> bool:
        return self.found and not self.blend


def pair_score(image: np.ndarray, places: list[Place], glyphs: list[Glyph], gallery: tuple[Glyph, ...]) -> PairScore:
    """Score glyph k at ``places[k]`` (k = 0, 1) against its own and the other reference, and retrieval among
    ``gallery`` (which holds both)."""
    exact, swap, blend = [], [], []
    found = all(retrieved(image, places[k], glyphs[k], gallery) for k in (0, 1))
    for k in (0, 1):
        own, other = glyphs[k].grid, glyphs[1 - k].grid
        got = classify(read_cells(image, places[k]))
        exact.append(int((got == own).sum()) >= EXACT_CELLS)
        swap.append(int((got == other).sum()) > int((got == own).sum()))
        blend.append(int(((got == other) & (own != other)).sum()) >= BLEND_CELLS)
    return PairScore(all(exact), any(swap), any(blend), found)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate ``successes / n``."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def mean_interval(values: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap percentile interval of the mean of ``values`` (per-sample reals such as cell accuracy)."""
    values = np.asarray(values, np.float64)
    idx = np.random.default_rng(seed).integers(0, len(values), size=(draws, len(values)))
    means = values[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def bootstrap_difference(a: np.ndarray, b: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b) for paired outcomes (0/1 or real; resampling the pairs)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(draws, len(a)))
    diffs = a[idx].mean(1) - b[idx].mean(1)
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def seed_interval(means: list[float]) -> tuple[float, float, float]:
    """(mean, lo, hi) over training seeds: Student's t 95% interval of the mean of the per-seed values (clipped to
    what a rate can be only by the caller). One seed gives (m, m, m)."""
    x = np.asarray(means, np.float64)
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    half = T95.get(len(x) - 1, 1.96) * float(x.std(ddof=1)) / np.sqrt(len(x))
    return m, m - half, m + half
