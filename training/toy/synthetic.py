"""Rows of the toy world at any size, for the trainer's tests and benches (``make_synthetic_dataset``).

The toy world's glyphs (its palette, backgrounds and random glyphs) at the caller's target size, without the toy's
fixed layout or held-out split: each target shows 1..``max_refs`` glyphs, one per horizontal slot at a random
offset and scale; reference k is glyph k alone at ``ref_size`` px; its mask is the glyph's exact footprint in the
target. ``kind="self"`` writes stage-3 style rows (the target is its own reference, mask = everything). Writes
``metadata.jsonl`` in the format documented in ``training/data.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .constants import GLYPH_CELLS
from .world import BACKGROUNDS, PALETTE_RGB, random_glyph


def glyph_image(cells: np.ndarray, side: int) -> np.ndarray:
    """(GLYPH_CELLS, GLYPH_CELLS) palette indices -> (side, side, 3) uint8 (nearest-neighbour cells)."""
    idx = np.arange(side) * GLYPH_CELLS // side
    return PALETTE_RGB[cells[idx][:, idx]]


def write_sample(root: Path, i: int, rng: np.random.Generator, size: tuple[int, int], n_refs: int, ref_size: int) -> dict:
    """Write one target, its references and masks; return its metadata row."""
    h, w = size
    background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    target = np.empty((h, w, 3), np.uint8)
    target[:] = BACKGROUNDS[background]
    slot = w // n_refs
    side = max(GLYPH_CELLS, int(min(h, slot) * rng.uniform(0.45, 0.7)))
    refs = []
    for k in range(1, n_refs + 1):
        cells = random_glyph(rng).grid
        x0 = (k - 1) * slot + int(rng.integers(0, max(1, slot - side + 1)))
        y0 = int(rng.integers(0, h - side + 1))
        target[y0 : y0 + side, x0 : x0 + side] = glyph_image(cells, side)
        mask = np.zeros((h, w), np.uint8)
        mask[y0 : y0 + side, x0 : x0 + side] = 255
        Image.fromarray(glyph_image(cells, ref_size)).save(root / "refs" / f"{i:05d}_{k}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:05d}_{k}.png")
        refs.append({"image": f"refs/{i:05d}_{k}.png", "mask": f"masks/{i:05d}_{k}.png", "task": "ip", "index": k})
    Image.fromarray(target).save(root / "targets" / f"{i:05d}.png")
    caption = " and ".join(f"a [ref#{k}]" for k in range(1, n_refs + 1)) + f" on a {background} background"
    plain = " and ".join("a glyph" for _ in range(n_refs)) + f" on a {background} background"
    return {"target": f"targets/{i:05d}.png", "caption": caption, "plain_caption": plain, "references": refs}


def write_self_sample(root: Path, i: int, rng: np.random.Generator, size: tuple[int, int]) -> dict:
    """Stage-3 row: the target is its own reference; the mask covers the whole image."""
    row = write_sample(root, i, rng, size, 1, size[0])
    h, w = size
    Image.new("L", (w, h), 255).save(root / "masks" / f"{i:05d}_full.png")
    row["references"] = [{"image": row["target"], "mask": f"masks/{i:05d}_full.png", "task": "ip", "index": 1}]
    row["caption"] = row["caption"].replace("a [ref#1]", "this image of a [ref#1]")
    return row


def make_synthetic_dataset(
    root: str | Path, n: int, seed: int = 0, size: tuple[int, int] = (128, 128), max_refs: int = 2,
    ref_size: int = 64, kind: str = "subject", fixed_refs: int = 0,
) -> Path:
    """Write ``n`` samples under ``root``: 1..max_refs glyphs each (cycling), or exactly ``fixed_refs``;
    ``kind="self"`` writes self-reference rows."""
    root = Path(root)
    for sub in ("targets", "refs", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        if kind == "self":
            rows.append(write_self_sample(root, i, rng, size))
        else:
            rows.append(write_sample(root, i, rng, size, fixed_refs or 1 + i % max_refs, ref_size))
    with open(root / "metadata.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return root
