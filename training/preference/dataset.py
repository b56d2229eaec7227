"""Preference pairs in the trainer's dataset format: a folder with ``metadata.jsonl``, one pair per line, paths
relative to the folder::

    {"preferred": "pairs/0001_w.png", "rejected": "pairs/0001_l.png",      # two targets of the same size
     "caption": "a [ref#1] at top left on a gray background",
     "plain_caption": "a red circle at top left on a gray background",     # optional, as the trainer's rows
     "references": [{"image": "refs/0001_1.png", "task": "ip", "index": 1}],
     "region_box": [0, 0, 48, 48]}                                          # optional: the localization, or
     "region": "regions/0001.png"                                           # a mask (white = inside), target size

The references, captions and placeholders are checked as the trainer's rows (``training/data.py``; a reference's
``mask`` is accepted and checked against the target's size, the preference loss does not use it). The region M
of the localized loss is ``region`` as given, or ``region_box`` (pixels of the targets, x1 / y1 exclusive) enlarged
by ``preference.dilation`` about its centre (DreamFuse's box + α); with ``preference.localized`` every row needs
one. Bad rows are reported as ``metadata.jsonl:LINE: reason`` like the trainer's (``DatasetError``, exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from dreamo_core.preference.regions import Box, box_mask, dilated_box

from ..data import (
    LoadedSample,
    RefRow,
    Row,
    check_keys,
    decoded_size,
    existing_file,
    fit,
    load_gray,
    load_rgb,
    load_sample,
    mask_to_tokens,
    nearest_bucket,
    parse_references,
    placed,
    read_metadata,
    reference_sizes,
)

KEYS = {"preferred", "rejected", "caption", "plain_caption", "references", "region", "region_box"}


@dataclass(frozen=True)
class PairRow(Row):
    """A trainer row whose ``target`` is the preferred image, plus the rejected one and the optional region."""

    rejected: Path
    region: Path | None
    region_box: Box | None


def parse_box(value: object, size: tuple[int, int]) -> Box:
    """``[x0, y0, x1, y1]`` integers with 0 <= x0 < x1 <= width, 0 <= y0 < y1 <= height; ValueError otherwise."""
    w, h = size
    ok = isinstance(value, list) and len(value) == 4 and all(isinstance(v, int) and not isinstance(v, bool)
                                                             for v in value)
    if not ok or not (0 <= value[0] < value[2] <= w and 0 <= value[1] < value[3] <= h):
        raise ValueError(f"region_box must be [x0, y0, x1, y1] integer pixels with 0 <= x0 < x1 <= {w} and "
                         f"0 <= y0 < y1 <= {h} (the targets are {w}x{h}), got {value!r}")
    return tuple(value)


def check_region(path: Path, rel: str, size: tuple[int, int]) -> None:
    """The region mask decodes, has the targets' (width, height) and selects something."""
    got = decoded_size(path, f"region {rel!r}")
    if got != size:
        raise ValueError(f"region {rel!r} is {got[0]}x{got[1]} but the targets are {size[0]}x{size[1]} "
                         "(width x height); the region is where the preference is judged in the targets")
    if not load_gray(path).max() > 0:
        raise ValueError(f"region {rel!r} is black everywhere: an empty region judges nothing")


def parse_pair_row(obj: object, folder: Path, buckets: list, ref_res: int, source: str,
                   need_region: bool = False, placement: str = "diagonal") -> PairRow:
    """Validate one decoded JSON line of a pair dataset; raise ValueError with the reason. ``placement``:
    ``data.placement`` (``box``: each reference's placement box, from its ``box`` or its mask, as the trainer's)."""
    obj = check_keys(obj, KEYS, ("preferred", "rejected", "caption", "references"))
    preferred = existing_file(folder, obj["preferred"], "preferred")
    rejected = existing_file(folder, obj["rejected"], "rejected")
    if preferred.resolve() == rejected.resolve():
        raise ValueError(f"preferred and rejected are the same file {obj['preferred']!r}: a pair needs two images")
    if "region" in obj and "region_box" in obj:
        raise ValueError("give region (a mask) or region_box, not both")
    if need_region and "region" not in obj and "region_box" not in obj:
        raise ValueError("preference.localized: true needs a region (a mask) or a region_box in every row")
    region = existing_file(folder, obj["region"], "region") if "region" in obj else None
    refs = parse_references(obj, folder)
    size = decoded_size(preferred, f"preferred {obj['preferred']!r}")
    got = decoded_size(rejected, f"rejected {obj['rejected']!r}")
    if got != size:
        raise ValueError(f"rejected {obj['rejected']!r} is {got[0]}x{got[1]} but preferred {obj['preferred']!r} is "
                         f"{size[0]}x{size[1]} (width x height); the two targets of a pair have the same size")
    if region is not None:
        check_region(region, obj["region"], size)
    box = parse_box(obj["region_box"], size) if "region_box" in obj else None
    ref_sizes = reference_sizes(obj, refs, ref_res, size)
    target_size = nearest_bucket(size[1], size[0], buckets)
    if placement == "box":
        refs = tuple(placed(r, j, size[1], size[0], target_size) for j, r in enumerate(refs))
    else:
        refs = tuple(RefRow(r.image, r.task, r.index, r.mask) for r in refs)
    bucket = (target_size, ref_sizes, tuple(r.index for r in refs), tuple(r.box for r in refs))
    return PairRow(preferred, obj["caption"], obj.get("plain_caption"), refs, source, bucket, rejected, region, box)


def read_pairs(folder: str | Path, buckets: list, ref_res: int, on_bad_row: str = "stop",
               need_region: bool = False, placement: str = "diagonal") -> list[PairRow]:
    """All valid pair rows of ``folder/metadata.jsonl`` (bad rows: ``training.data.read_metadata``'s rules)."""
    return read_metadata(folder, buckets, ref_res, on_bad_row,
                         partial(parse_pair_row, need_region=need_region, placement=placement))


@dataclass
class LoadedPair:
    """``sample``: the preferred target, references, caption (``training.data.LoadedSample``); ``rejected``
    (H, W, 3) in [0, 1] at the same bucket; ``region`` (N,) token weights of M (all ones without a region)."""

    sample: LoadedSample
    rejected: torch.Tensor
    region: torch.Tensor


def region_pixels(row: PairRow, dilation: float) -> torch.Tensor | None:
    """(H, W, 1) in [0, 1] at the targets' own size: the region mask, or the region box enlarged by ``dilation``."""
    if row.region is not None:
        return load_gray(row.region)
    if row.region_box is not None:
        w, h = decoded_size(row.target, "preferred")
        return box_mask(dilated_box(row.region_box, dilation, w, h), w, h)
    return None


def load_pair(row: PairRow, ref_res: int, use_plain: bool, dilation: float) -> LoadedPair:
    """Read one pair at its bucket (both targets centre-cropped and resized alike, the region too, then pooled to
    the token grid: each token's weight is the share of its 16 x 16 pixels inside M)."""
    sample = load_sample(row, ref_res, use_plain)
    size = row.bucket[0]
    pixels = region_pixels(row, dilation)
    region = mask_to_tokens(fit(pixels, size)) if pixels is not None else torch.ones(size[0] // 16 * (size[1] // 16))
    return LoadedPair(sample, fit(load_rgb(row.rejected), size), region)
