"""Rows of the toy world at any size, for the trainer's tests and benches (``make_synthetic_dataset``).

The toy world's subjects (its colours and shapes, solid, drawn by ``world.paint``) on its backgrounds, but at the
caller's target size and without the toy's layout, native scale or held-out split: each target shows
1..``max_refs`` subjects of distinct colour-shape pairs, one per horizontal slot at random offsets; reference k
is subject k alone, centred on white; its mask is the subject's exact footprint in the target. ``kind="self"``
writes stage-3 style rows (the target is its own reference, mask = everything). Writes ``metadata.jsonl`` in the
format documented in ``training/data.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .world import BACKGROUNDS, COLORS, SHAPES, Subject, paint


def _place(rng: np.random.Generator, size: tuple[int, int], n: int, side: int) -> list[tuple[int, int, int, int]]:
    """n non-overlapping square boxes of ``side`` px inside (h, w): one per horizontal slot, random offsets."""
    h, w = size
    slot = w // n
    boxes = []
    for i in range(n):
        x0 = i * slot + int(rng.integers(0, max(1, slot - side + 1)))
        y0 = int(rng.integers(0, h - side + 1))
        boxes.append((x0, y0, x0 + side - 1, y0 + side - 1))
    return boxes


def write_sample(root: Path, i: int, rng: np.random.Generator, size: tuple[int, int], n_refs: int, ref_size: int) -> dict:
    """Write one target, its references and masks; return its metadata row."""
    h, w = size
    bg_name = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    target = np.empty((h, w, 3), np.uint8)
    target[:] = BACKGROUNDS[bg_name]
    side = int(min(h, w // n_refs) * rng.uniform(0.45, 0.7))
    codes = rng.choice(len(COLORS) * len(SHAPES), size=n_refs, replace=False)
    refs, words = [], []
    for k, (code, box) in enumerate(zip(codes, _place(rng, size, n_refs, side)), start=1):
        subject = Subject(list(COLORS)[code // len(SHAPES)], SHAPES[code % len(SHAPES)], "solid")
        mask = paint(target, subject, box)
        ref = np.full((ref_size, ref_size, 3), 255, np.uint8)
        m = ref_size // 8
        paint(ref, subject, (m, m, ref_size - m - 1, ref_size - m - 1))
        Image.fromarray(ref).save(root / "refs" / f"{i:05d}_{k}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{i:05d}_{k}.png")
        refs.append({"image": f"refs/{i:05d}_{k}.png", "mask": f"masks/{i:05d}_{k}.png", "task": "ip", "index": k})
        words.append(f"{subject.color} {subject.shape}")
    Image.fromarray(target).save(root / "targets" / f"{i:05d}.png")
    caption = " and ".join(f"a [ref#{k}]" for k in range(1, n_refs + 1)) + f" on a {bg_name} background"
    plain = " and ".join(f"a {wd}" for wd in words) + f" on a {bg_name} background"
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
    """Write ``n`` samples under ``root``: 1..max_refs subjects each (cycling), or exactly ``fixed_refs``;
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
