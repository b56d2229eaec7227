"""Dataset format, row validation, aspect buckets and deterministic per-step batch sampling.

Format: a folder with ``metadata.jsonl``, one JSON object per line; paths are relative to the folder::

    {"target": "targets/0001.png",
     "caption": "a [ref#1] next to a [ref#2]",            # every reference's [ref#k] appears in it
     "plain_caption": "a red circle next to a blue cube",  # optional: the same prompt without placeholders
     "references": [{"image": "refs/0001_1.png", "task": "ip", "index": 1, "mask": "masks/0001_1.png"}, ...]}

``task`` is ``ip``/``id``/``style``; ``index`` 1..9, unique per row; ``mask`` is the subject's footprint in the
*target* (white = subject), the L_route target, so it must have the target's size. Optional ``"box": [x, y, w, h]``
(fractions of the target) is where the reference belongs in the target: with ``data.placement: box`` its position
ids are mapped into that box (DreamFuse's positional affine) instead of DreamO's diagonal offsets; a reference
without a box then takes the bounding box of its mask. Boxes are part of a row's bucket (one id table per batch). Every image a row names is
decoded once when the rows are checked (a truncated PNG or a text file named ``.png`` is a bad row, not a crash
mid-training). A bad row is reported as ``file:line: reason`` and either stops loading (``on_bad_row="stop"``,
``DatasetError``) or is skipped with a warning (``"skip"``); a dataset left without rows is a ``DatasetError``.

Sampling: the global batch of step s is a pure function of (seed, s): the stage's mixture picks a dataset group,
a bucket (same target size and reference sizes) is drawn in proportion to its size, then rows. Resuming at step
s therefore reproduces the data order exactly; each process takes rows ``rank::world`` of the global batch.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dreamo_core.conditioning.placeholders import find_placeholders
from dreamo_core.conditioning.placement import Box
from dreamo_core.conditioning.reference_images import TASKS, area_resize_size, center_square, resize_area

logger = logging.getLogger("DreamO")
TOKEN_PIXELS = 16
PLACEMENTS = ("diagonal", "box")  # data.placement: DreamO's diagonal reference ids, or each reference in its box
CHECK_THREADS = min(8, os.cpu_count() or 1)  # rows are checked (images decoded) in parallel


class DatasetError(ValueError):
    """A dataset the trainer cannot use: a bad row (with ``on_bad_row: stop``), no usable rows, no metadata."""


@dataclass(frozen=True)
class RefRow:
    image: Path
    task: str
    index: int
    mask: Path | None
    box: Box | None = None  # where the reference belongs in the target (data.placement: box), else None


@dataclass(frozen=True)
class Row:
    target: Path
    caption: str
    plain_caption: str | None
    refs: tuple[RefRow, ...]
    source: str  # "metadata.jsonl:LINE" for messages
    bucket: tuple  # ((H, W) target, ((h, w) per reference), (index per reference), (box per reference)): batchable


def nearest_bucket(h: int, w: int, buckets: Sequence[Sequence[int]]) -> tuple[int, int]:
    """The bucket (H, W) whose aspect ratio is closest to h/w (in log space)."""
    best = min(buckets, key=lambda b: abs(math.log((b[0] / b[1]) / (h / w))))
    return int(best[0]), int(best[1])


def ref_size(h: int, w: int, task: str, ref_res: int) -> tuple[int, int]:
    """Pixel size of a prepared reference: id -> centre square at ref_res; ip/style -> area ~ref_res**2."""
    return (ref_res, ref_res) if task == "id" else area_resize_size(h, w, ref_res)


def decoded_size(path: Path, what: str) -> tuple[int, int]:
    """(width, height) of an image that fully decodes (PIL open + load); ValueError naming ``what`` otherwise."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{what} does not decode as an image ({type(e).__name__}: {e})") from e


def check_mask(path: Path, what: str, target_size: tuple[int, int]) -> None:
    """The mask decodes and has the target's (width, height): it is the subject's footprint in the target."""
    size = decoded_size(path, what)
    if size != target_size:
        raise ValueError(f"{what} is {size[0]}x{size[1]} but the target is {target_size[0]}x{target_size[1]} "
                         "(width x height); a mask is the subject's footprint in the target and must match it")


def parse_box(value: object, what: str) -> Box:
    """A row's ``box`` [x, y, w, h] (fractions of the target) as a Box; ValueError naming ``what`` otherwise."""
    if not isinstance(value, list) or len(value) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} must be a list [x, y, w, h] of fractions of the target, got {value!r}")
    try:
        return Box(*(float(v) for v in value))
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from e


def mask_box(path: Path, what: str) -> Box:
    """The bounding box of a mask's foreground (pixels > 127), as fractions of the mask (= the target)."""
    with Image.open(path) as im:
        m = np.asarray(im.convert("L")) > 127
    if not m.any():
        raise ValueError(f"{what} selects nothing, so it gives no placement box (data.placement: box); give the "
                         "reference a \"box\" or a mask with a foreground")
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    h, w = m.shape
    return Box(cols[0] / w, rows[0] / h, (cols[-1] + 1 - cols[0]) / w, (rows[-1] + 1 - rows[0]) / h)


def cropped_box(box: Box, h: int, w: int, size: tuple[int, int]) -> Box:
    """``box`` (fractions of an (h, w) target) after ``fit``'s centre crop to the bucket ``size``'s aspect: where the
    reference sits in the cropped target, clipped to it."""
    ch, cw = crop_to_aspect(torch.empty(h, w, 0), *size).shape[:2]
    top, left = (h - ch) // 2, (w - cw) // 2
    y0, y1 = (max(box.y * h - top, 0) / ch, min((box.y + box.h) * h - top, ch) / ch)
    x0, x1 = (max(box.x * w - left, 0) / cw, min((box.x + box.w) * w - left, cw) / cw)
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"box {box} lies outside the part of the target kept for the bucket {size[0]}x{size[1]}")
    return Box(x0, y0, x1 - x0, y1 - y0)


def check_keys(obj: object, allowed: set[str], required: tuple[str, ...]) -> dict:
    """The row as a dict with only ``allowed`` keys, every ``required`` one, a string caption and a non-empty
    references list; ValueError otherwise."""
    if not isinstance(obj, dict):
        raise ValueError("a row must be a JSON object")
    unknown = set(obj) - allowed
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}")
    for key in required:
        if key not in obj:
            raise ValueError(f"missing key {key!r}")
    if not isinstance(obj["caption"], str) or not isinstance(obj["references"], list) or not obj["references"]:
        raise ValueError("caption must be a string and references a non-empty list")
    return obj


def existing_file(folder: Path, rel: object, what: str) -> Path:
    """``folder / rel`` when ``rel`` is a string naming a file there; ValueError naming ``what`` otherwise."""
    if not isinstance(rel, str) or not (folder / rel).is_file():
        raise ValueError(f"{what} file not found: {rel!r}")
    return folder / rel


def parse_references(obj: dict, folder: Path) -> tuple[RefRow, ...]:
    """The row's references (task, unique index 1..9, files present), checked against the caption's [ref#k]
    placeholders; the plain caption (when given) has none."""
    refs, seen = [], set()
    for j, r in enumerate(obj["references"]):
        if not isinstance(r, dict) or r.get("task") not in TASKS:
            raise ValueError(f"references[{j}]: task must be one of {TASKS}")
        k = r.get("index")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 9 or k in seen:
            raise ValueError(f"references[{j}]: index must be a unique int in 1..9, got {k!r}")
        seen.add(k)
        unknown = set(r) - {"image", "task", "index", "mask", "box"}
        if unknown:
            raise ValueError(f"references[{j}]: unknown key(s) {sorted(unknown)}")
        mask = existing_file(folder, r["mask"], f"references[{j}] mask") if r.get("mask") is not None else None
        box = parse_box(r["box"], f"references[{j}] box") if r.get("box") is not None else None
        refs.append(RefRow(existing_file(folder, r.get("image"), f"references[{j}] image"), r["task"], k, mask, box))
    found = {p.index for p in find_placeholders(obj["caption"])}
    if found != seen:
        raise ValueError(f"caption placeholders {sorted(found)} do not match the reference indices {sorted(seen)}")
    plain = obj.get("plain_caption")
    if plain is not None and (not isinstance(plain, str) or find_placeholders(plain)):
        raise ValueError("plain_caption must be a string without [ref#k] placeholders")
    return tuple(refs)


def reference_sizes(obj: dict, refs: Sequence[RefRow], ref_res: int, target_size: tuple[int, int]) -> tuple:
    """Each reference decoded -> its prepared (h, w); each mask decoded and of the target's (width, height)."""
    sizes = []
    for j, r in enumerate(refs):
        w, h = decoded_size(r.image, f"references[{j}] image {obj['references'][j]['image']!r}")
        sizes.append(ref_size(h, w, r.task, ref_res))
        if r.mask is not None:
            check_mask(r.mask, f"references[{j}] mask {obj['references'][j]['mask']!r}", target_size)
    return tuple(sizes)


RowParser = Callable[[object, Path, Sequence[Sequence[int]], int, str], "Row"]


def parse_row(obj: object, folder: Path, buckets: Sequence[Sequence[int]], ref_res: int, source: str,
              placement: str = "diagonal") -> Row:
    """Validate one decoded JSON line; raise ValueError with the reason. ``placement``: ``data.placement``
    (``box``: every reference gets its placement box, from the row or its mask; ``diagonal``: boxes play no part)."""
    obj = check_keys(obj, {"target", "caption", "plain_caption", "references"}, ("target", "caption", "references"))
    target = existing_file(folder, obj["target"], "target")
    refs = parse_references(obj, folder)
    tw, th = decoded_size(target, f"target {obj['target']!r}")
    ref_sizes = reference_sizes(obj, refs, ref_res, (tw, th))
    size = nearest_bucket(th, tw, buckets)
    if placement == "box":
        refs = tuple(placed(r, j, th, tw, size) for j, r in enumerate(refs))
    else:
        refs = tuple(RefRow(r.image, r.task, r.index, r.mask) for r in refs)
    bucket = (size, ref_sizes, tuple(r.index for r in refs), tuple(r.box for r in refs))
    return Row(target, obj["caption"], obj.get("plain_caption"), refs, source, bucket)


def placed(ref: RefRow, j: int, h: int, w: int, size: tuple[int, int]) -> RefRow:
    """``ref`` with its placement box in the bucket's crop: the row's ``box``, else its mask's bounding box."""
    if ref.box is None and ref.mask is None:
        raise ValueError(f"references[{j}]: data.placement box needs the reference's \"box\" or its \"mask\"")
    box = ref.box if ref.box is not None else mask_box(ref.mask, f"references[{j}] mask")
    return RefRow(ref.image, ref.task, ref.index, ref.mask, cropped_box(box, h, w, size))


def _check_line(line: str, folder: Path, buckets: Sequence[Sequence[int]], ref_res: int, source: str,
                parse: RowParser) -> Row | Exception:
    """The row of one JSON line, or the reason it is bad (returned, so rows can be checked in parallel)."""
    try:
        return parse(json.loads(line), folder, buckets, ref_res, source)
    except (ValueError, OSError) as e:  # json.JSONDecodeError is a ValueError
        return e


def read_metadata(folder: str | Path, buckets: Sequence[Sequence[int]], ref_res: int, on_bad_row: str = "stop",
                  parse: RowParser | None = None, placement: str = "diagonal") -> list[Row]:
    """All valid rows of ``folder/metadata.jsonl`` (``parse``: one JSON object -> its row, ValueError when bad;
    default ``parse_row`` with ``placement``; the preference stage passes its pair rows'). Bad rows raise
    DatasetError (stop) or are logged and skipped (skip); no usable rows is a DatasetError."""
    parse = parse or partial(parse_row, placement=placement)
    folder = Path(folder)
    meta = folder / "metadata.jsonl"
    if not meta.is_file():
        raise DatasetError(f"dataset {folder}: metadata.jsonl not found")
    lines = [(f"{meta}:{n}", line) for n, line in enumerate(meta.read_text().splitlines(), start=1) if line.strip()]
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        checked = list(pool.map(lambda item: _check_line(item[1], folder, buckets, ref_res, item[0], parse), lines))
    bad = [(source, e) for (source, _), e in zip(lines, checked) if isinstance(e, Exception)]
    if bad and on_bad_row == "stop":
        source, e = bad[0]
        more = f" ({len(bad) - 1} more bad row(s); data.on_bad_row: skip skips them)" if len(bad) > 1 else ""
        raise DatasetError(f"{source}: bad row: {e}{more}") from e
    for source, e in bad:
        logger.warning("%s: skipping bad row: %s", source, e)
    rows = [r for r in checked if isinstance(r, Row)]
    if not rows:
        why = f"all {len(lines)} row(s) are bad (see the warnings above)" if lines else "the file has no rows"
        raise DatasetError(f"dataset {folder}: no usable rows in metadata.jsonl: {why}")
    if bad:
        logger.warning("dataset %s: skipped %d of %d rows", folder, len(bad), len(lines))
    return rows


def load_rgb(path: Path) -> torch.Tensor:
    """(H, W, 3) float32 in [0, 1]."""
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)


def load_gray(path: Path) -> torch.Tensor:
    """(H, W, 1) float32 in [0, 1]."""
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[..., None]


def crop_to_aspect(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Centre crop (H, W, C) to the aspect ratio h/w."""
    ih, iw = img.shape[:2]
    if ih * w > iw * h:
        ch = iw * h // w
        top = (ih - ch) // 2
        return img[top : top + ch]
    cw = ih * w // h
    left = (iw - cw) // 2
    return img[:, left : left + cw]


def reference_pixels(img: torch.Tensor, task: str, size: tuple[int, int]) -> torch.Tensor:
    """A reference image (H, W, 3) prepared at ``size`` (``ref_size``): ``id`` centre square, then area resize."""
    return resize_area(center_square(img), size) if task == "id" else resize_area(img, size)


def fit(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W, C) -> centre-cropped and area-resized (h, w, C)."""
    return resize_area(crop_to_aspect(img, *size), size)


def mask_to_tokens(mask: torch.Tensor) -> torch.Tensor:
    """(H, W, 1) pixel mask -> (H/16 * W/16,) fraction of each token covered (row-major token grid)."""
    m = mask[..., 0][None, None]
    return torch.nn.functional.avg_pool2d(m, TOKEN_PIXELS).flatten()


def save_rgb(pixels: torch.Tensor, path: Path) -> None:
    """(H, W, 3) in [0, 1] -> an 8-bit RGB PNG (rounded)."""
    Image.fromarray((pixels.clamp(0, 1) * 255).round().byte().numpy()).save(path)


def save_gray(pixels: torch.Tensor, path: Path) -> None:
    """(H, W) in [0, 1] -> an 8-bit gray PNG (rounded)."""
    Image.fromarray((pixels.clamp(0, 1) * 255).round().byte().numpy(), mode="L").save(path)


def write_rows(root: Path, rows: Sequence[dict]) -> None:
    """``root/metadata.jsonl``, one JSON object per line."""
    with open(root / "metadata.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


@dataclass
class LoadedSample:
    """Pixels in [0, 1]: target (H, W, 3); refs [(h, w, 3)]; masks (n_refs, N) token-grid masks."""

    target: torch.Tensor
    refs: list[torch.Tensor]
    indices: list[int]
    masks: torch.Tensor
    caption: str
    has_placeholders: bool


def load_sample(row: Row, ref_res: int, use_plain: bool) -> LoadedSample:
    """Read and resize one row's images to its bucket."""
    size = row.bucket[0]
    target = fit(load_rgb(row.target), size)
    refs, masks = [], []
    for r, rsize in zip(row.refs, row.bucket[1]):
        refs.append(reference_pixels(load_rgb(r.image), r.task, rsize))
        m = fit(load_gray(r.mask), size) if r.mask is not None else torch.zeros(*size, 1)
        masks.append(mask_to_tokens(m))
    plain = use_plain and row.plain_caption is not None
    caption = row.plain_caption if plain else row.caption
    return LoadedSample(target, refs, [r.index for r in row.refs], torch.stack(masks), caption, not plain)


@dataclass
class BatchPlan:
    """What one process trains on at one step: its rows, plain-caption flags and the reference-token keep mask."""

    rows: list[Row]
    use_plain: list[bool]
    ref_keep_seed: int  # seeds the (shared) reference-token drop of this step
    group: str = ""  # the dataset group the stage's mixture picked for this step


class BatchSampler:
    """Deterministic global batches: ``plan(step, mixture, rank, world)``; see the module docstring."""

    def __init__(self, groups: dict[str, list[Row]], batch_size: int, plain_caption_prob: float, seed: int):
        self.batch_size, self.plain_prob, self.seed = batch_size, plain_caption_prob, seed
        self.buckets: dict[str, list[list[Row]]] = {}
        for name, rows in groups.items():
            by_key: dict[tuple, list[Row]] = {}
            for row in rows:
                by_key.setdefault(row.bucket, []).append(row)
            self.buckets[name] = [by_key[k] for k in sorted(by_key, key=repr)]

    def plan(self, step: int, mixture: dict[str, float], rank: int = 0, world: int = 1) -> BatchPlan:
        if self.batch_size % world:
            raise ValueError(f"data.batch_size={self.batch_size} must be divisible by the {world} processes")
        rng = np.random.default_rng([self.seed, step])
        names = sorted(mixture)
        p = np.array([mixture[n] for n in names], dtype=np.float64)
        name = names[int(rng.choice(len(names), p=p / p.sum()))]
        group = self.buckets[name]
        sizes = np.array([len(b) for b in group], dtype=np.float64)
        bucket = group[int(rng.choice(len(group), p=sizes / sizes.sum()))]
        picks = rng.choice(len(bucket), size=self.batch_size, replace=len(bucket) < self.batch_size)
        plain = rng.random(self.batch_size) < self.plain_prob
        keep_seed = int(rng.integers(2**31))
        mine = slice(rank, None, world)
        return BatchPlan([bucket[int(i)] for i in picks[mine]], [bool(x) for x in plain[mine]], keep_seed, name)
