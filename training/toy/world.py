"""The toy world: subjects = shape x colour x pattern, drawn at a small native resolution.

A scene is ``NATIVE`` x ``NATIVE`` native pixels (one or two subjects at random place and scale on a random plain
low-saturation background); a reference is the subject alone, centred on white, ``REF_NATIVE`` px. Files are
stored ``UPSCALE`` x larger by nearest-neighbour repetition, so that the trainer's 16-px token grid and the
8x-downscaling codec (``training.toy.codec.ToyCodec``) hold exactly ``4 x 4`` native pixels per token.

Held-out subjects (``HELD_OUT``): six (colour, shape, pattern) combinations that no training scene, reference or
caption ever shows; every colour, shape and pattern still appears in training in other combinations.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
from PIL import Image, ImageDraw

from .constants import NATIVE, REF_NATIVE, UPSCALE

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35), "green": (35, 175, 55), "blue": (40, 70, 230), "yellow": (240, 205, 30),
    "magenta": (205, 45, 205), "cyan": (35, 200, 215)}
SHAPES = ("circle", "square", "triangle")
PATTERNS = ("solid", "striped")
STRIPE_DARK = 0.45  # a striped subject alternates its colour and this fraction of it, rows of STRIPE_ROWS px
STRIPE_ROWS = 2
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (150, 150, 150), "silver": (200, 200, 195), "slate": (105, 110, 120), "beige": (215, 205, 175),
    "sage": (165, 185, 170), "rose": (200, 175, 180)}
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Subject:
    color: str
    shape: str
    pattern: str

    @property
    def words(self) -> str:
        return f"{self.color} {self.pattern} {self.shape}"


ALL_SUBJECTS = tuple(Subject(c, s, p) for c, s, p in product(COLORS, SHAPES, PATTERNS))
# colour i is held out with (shape, pattern) pair i: a Latin assignment, each pair held out once
HELD_OUT = tuple(Subject(c, s, p) for c, (s, p) in zip(COLORS, product(SHAPES, PATTERNS)))
TRAIN_SUBJECTS = tuple(s for s in ALL_SUBJECTS if s not in HELD_OUT)


def shape_mask(shape: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool footprint of ``shape`` filling ``box`` (x0, y0, x1, y1 inclusive) on an image of ``size`` (H, W)."""
    img = Image.new("L", (size[1], size[0]), 0)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "square":
        draw.rectangle(box, fill=255)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return np.asarray(img) > 127


def paint(canvas: np.ndarray, subject: Subject, box: tuple[int, int, int, int]) -> np.ndarray:
    """Draw ``subject`` into ``canvas`` (H, W, 3) uint8 in place; return its footprint (H, W) bool."""
    m = shape_mask(subject.shape, box, canvas.shape[:2])
    color = np.array(COLORS[subject.color], dtype=np.float64)
    if subject.pattern == "striped":
        rows = (np.arange(canvas.shape[0]) - box[1]) // STRIPE_ROWS % 2 == 1
        dark = np.round(color * STRIPE_DARK).astype(np.uint8)
        canvas[m & ~rows[:, None]] = color.astype(np.uint8)
        canvas[m & rows[:, None]] = dark
    else:
        canvas[m] = color.astype(np.uint8)
    return m


@dataclass
class Scene:
    """Native-resolution pixels: image (H, W, 3) uint8, one mask (H, W) bool and one reference per subject."""

    image: np.ndarray
    subjects: list[Subject]
    masks: list[np.ndarray]
    references: list[np.ndarray]
    background: str
    places: list[str]  # each subject's layout cell in words, e.g. "top left"


def reference_image(subject: Subject) -> np.ndarray:
    """(REF_NATIVE, REF_NATIVE, 3) uint8: the subject centred on white, 3 px margin."""
    ref = np.full((REF_NATIVE, REF_NATIVE, 3), 255, np.uint8)
    paint(ref, subject, (3, 3, REF_NATIVE - 4, REF_NATIVE - 4))
    return ref


ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
CELL_CENTRES = (8, 16, 24)  # native px of the three rows / columns


def boxes(rng: np.random.Generator, n: int) -> tuple[list[tuple[int, int, int, int]], list[str]]:
    """n square boxes at a random cell of a 3x3 layout (two subjects: the left and the right column), +-1 px
    jitter and a random side of 11..15 px; with the cell's words (``top left``), which the caption states."""
    out, words = [], []
    columns = [int(rng.integers(3))] if n == 1 else [0, 2]
    for col in columns:
        row = int(rng.integers(3))
        side = int(rng.integers(11, 16))
        cx, cy = CELL_CENTRES[col] + int(rng.integers(-1, 2)), CELL_CENTRES[row] + int(rng.integers(-1, 2))
        x0 = min(max(cx - side // 2, 0), NATIVE - side)
        y0 = min(max(cy - side // 2, 0), NATIVE - side)
        out.append((x0, y0, x0 + side - 1, y0 + side - 1))
        words.append(f"{ROWS[row]} {COLUMNS[col]}")
    return out, words


def make_scene(rng: np.random.Generator, subjects: list[Subject]) -> Scene:
    """A scene with ``subjects`` (1 or 2, left to right) on a random background."""
    bg = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    image = np.empty((NATIVE, NATIVE, 3), np.uint8)
    image[:] = BACKGROUNDS[bg]
    places, where = boxes(rng, len(subjects))
    masks = [paint(image, s, b) for s, b in zip(subjects, places)]
    return Scene(image, list(subjects), masks, [reference_image(s) for s in subjects], bg, where)


def draw_subjects(rng: np.random.Generator, pool: tuple[Subject, ...], n: int) -> list[Subject]:
    """n subjects from ``pool`` with distinct colours and distinct shapes (so two subjects never share either)."""
    while True:
        picks = [pool[int(i)] for i in rng.choice(len(pool), size=n, replace=False)]
        if len({s.color for s in picks}) == n and len({s.shape for s in picks}) == n:
            return picks


def caption(scene: Scene, placeholders: bool) -> str:
    """``a [ref#1] at top left and a [ref#2] at bottom right on a gray background`` (or the subjects' words
    instead of the placeholders)."""
    names = [f"[ref#{k}]" if placeholders else s.words for k, s in enumerate(scene.subjects, start=1)]
    return " and ".join(f"a {n} at {p}" for n, p in zip(names, scene.places)) + f" on a {scene.background} background"


def anonymous_caption(scene: Scene) -> str:
    """The text-only baseline's prompt: the scene's layout without any subject identity (``an object at ...``)."""
    return " and ".join(f"an object at {p}" for p in scene.places) + f" on a {scene.background} background"


def upscale(pixels: np.ndarray) -> np.ndarray:
    """(h, w[, c]) -> (UPSCALE h, UPSCALE w[, c]) by repetition (what the files hold)."""
    return pixels.repeat(UPSCALE, 0).repeat(UPSCALE, 1)


def downscale(pixels: np.ndarray) -> np.ndarray:
    """(UPSCALE h, UPSCALE w, c) float -> (h, w, c): the mean of each UPSCALE x UPSCALE block (inverse of upscale)."""
    h, w = pixels.shape[0] // UPSCALE, pixels.shape[1] // UPSCALE
    return pixels.reshape(h, UPSCALE, w, UPSCALE, -1).mean(axis=(1, 3))
