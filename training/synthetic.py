"""A tiny synthetic DreamO dataset: coloured shapes on plain backgrounds, with exact subject masks.

Each target shows 1..``max_refs`` shapes; reference k is shape k alone, centred on white; its mask is the
shape's exact footprint in the target. ``kind="self"`` writes stage-3 style rows (the target is its own
reference, mask = everything). Writes ``metadata.jsonl`` in the format documented in ``training/data.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (235, 200, 30),
          "magenta": (200, 50, 200), "cyan": (40, 200, 210)}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = {"gray": (150, 150, 150), "beige": (220, 205, 170), "teal": (90, 140, 140), "pink": (230, 180, 190)}


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: tuple[int, ...] | int) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


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
    target = Image.new("RGB", (w, h), BACKGROUNDS[bg_name])
    draw = ImageDraw.Draw(target)
    side = int(min(h, w // n_refs) * rng.uniform(0.45, 0.7))
    names = rng.choice(len(COLORS) * len(SHAPES), size=n_refs, replace=False)
    refs, words = [], []
    for k, (code, box) in enumerate(zip(names, _place(rng, size, n_refs, side)), start=1):
        color, shape = list(COLORS)[code // len(SHAPES)], SHAPES[code % len(SHAPES)]
        draw_shape(draw, shape, box, COLORS[color])
        mask = Image.new("L", (w, h), 0)
        draw_shape(ImageDraw.Draw(mask), shape, box, 255)
        ref = Image.new("RGB", (ref_size, ref_size), (255, 255, 255))
        m = ref_size // 8
        draw_shape(ImageDraw.Draw(ref), shape, (m, m, ref_size - m - 1, ref_size - m - 1), COLORS[color])
        ref.save(root / "refs" / f"{i:05d}_{k}.png")
        mask.save(root / "masks" / f"{i:05d}_{k}.png")
        refs.append({"image": f"refs/{i:05d}_{k}.png", "mask": f"masks/{i:05d}_{k}.png", "task": "ip", "index": k})
        words.append(f"{color} {shape}")
    target.save(root / "targets" / f"{i:05d}.png")
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
    """Write ``n`` samples under ``root``: 1..max_refs shapes each (cycling), or exactly ``fixed_refs``;
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
