"""A deterministic subject detector for the toy world and the metrics built on it (the toy's DINO / CLIP-I).

``detect``: every native pixel takes the nearest tone of the world (each subject colour, its stripe shade, every
background, white); pixels nearest a subject tone within ``MAX_TONE_DISTANCE`` are that colour; each colour's
8-connected components of at least ``MIN_AREA`` px are candidate subjects; a component's shape is the ideal
shape (drawn in the component's bounding box, as the world draws them) with the highest IoU, if that IoU is at
least ``MIN_IOU`` and the box is near square; its pattern is ``striped`` when at least ``STRIPED_FRACTION`` of its
pixels are the stripe shade.

Metrics on one generated image: **fidelity** (a subject of the reference's colour and shape is present),
**binding** (two references: both present; a **swap** is a subject with one reference's colour and the other's
shape). ``wilson`` gives the 95% interval of a rate; ``bootstrap_difference`` the 95% interval of a difference of
two paired rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .world import BACKGROUNDS, COLORS, SHAPES, STRIPE_DARK, WHITE, Subject, shape_mask

MAX_TONE_DISTANCE = 70.0  # RGB distance (0..255 scale) to the nearest subject tone
MIN_AREA = 30  # native px; the smallest subject (an 11 px triangle) has ~60
MIN_IOU = 0.6
MAX_ASPECT = 1.5  # bounding-box aspect; every subject is drawn in a square box
STRIPED_FRACTION = 0.2

NAMES = list(COLORS)
TONES = np.array([COLORS[c] for c in NAMES] + [tuple(round(v * STRIPE_DARK) for v in COLORS[c]) for c in NAMES]
                 + list(BACKGROUNDS.values()) + [WHITE], dtype=np.float64)  # (6 + 6 + 6 + 1, 3)


@dataclass(frozen=True)
class Detection:
    color: str
    shape: str | None  # None: no shape fits (a blob)
    pattern: str
    area: int
    iou: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 inclusive


def to_uint8_scale(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) in [0, 1] (float) or uint8 -> float64 on the 0..255 scale."""
    image = np.asarray(image)
    return image.astype(np.float64) if image.dtype == np.uint8 else np.clip(image, 0, 1).astype(np.float64) * 255.0


def classify_shape(mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[str | None, float]:
    """(shape or None, best IoU) of a component ``mask`` (H, W) bool within ``box``."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0 + 1, y1 - y0 + 1
    if max(w, h) > MAX_ASPECT * min(w, h):
        return None, 0.0
    ious = []
    for shape in SHAPES:
        ideal = shape_mask(shape, box, mask.shape)
        ious.append((mask & ideal).sum() / max(1, (mask | ideal).sum()))
    best = int(np.argmax(ious))
    return (SHAPES[best] if ious[best] >= MIN_IOU else None), float(ious[best])


def detect(image: np.ndarray) -> list[Detection]:
    """All subjects found in a native-resolution image (H, W, 3), largest first."""
    px = to_uint8_scale(image)
    d = np.linalg.norm(px[:, :, None, :] - TONES[None, None], axis=-1)  # (H, W, tones)
    nearest, dist = d.argmin(-1), d.min(-1)
    n = len(NAMES)
    subject = (nearest < 2 * n) & (dist <= MAX_TONE_DISTANCE)
    color_of, dark = np.where(subject, nearest % n, -1), subject & (nearest >= n)
    found = []
    for ci, name in enumerate(NAMES):
        labels, count = ndimage.label(color_of == ci, structure=np.ones((3, 3)))
        for k in range(1, count + 1):
            comp = labels == k
            area = int(comp.sum())
            if area < MIN_AREA:
                continue
            ys, xs = np.nonzero(comp)
            box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
            shape, iou = classify_shape(comp, box)
            pattern = "striped" if (dark & comp).sum() >= STRIPED_FRACTION * area else "solid"
            found.append(Detection(name, shape, pattern, area, iou, box))
    return sorted(found, key=lambda f: -f.area)


def has_subject(found: list[Detection], color: str, shape: str, pattern: str | None = None) -> bool:
    """A detection of ``color`` and ``shape`` (and ``pattern`` when given)."""
    return any(f.color == color and f.shape == shape and (pattern is None or f.pattern == pattern) for f in found)


def has_color(image: np.ndarray, color: str) -> bool:
    """A subject-sized region of ``color`` (any shape): the softer, colour-only score."""
    return any(f.color == color for f in detect(image))


def fidelity(image: np.ndarray, subject: Subject, with_pattern: bool = False) -> bool:
    """The image contains a subject of ``subject``'s colour and shape (and pattern)."""
    return has_subject(detect(image), subject.color, subject.shape, subject.pattern if with_pattern else None)


@dataclass(frozen=True)
class Binding:
    both: bool  # both references' (colour, shape) present
    swap: bool  # a subject with one reference's colour and the other's shape


def binding(image: np.ndarray, a: Subject, b: Subject) -> Binding:
    found = detect(image)
    both = has_subject(found, a.color, a.shape) and has_subject(found, b.color, b.shape)
    swap = has_subject(found, a.color, b.shape) or has_subject(found, b.color, a.shape)
    return Binding(both, swap)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate ``successes / n``."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_difference(a: np.ndarray, b: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b) for paired outcomes (0/1 or real; resampling the pairs)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(draws, len(a)))
    diffs = a[idx].mean(1) - b[idx].mean(1)
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))
