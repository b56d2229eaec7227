"""What the localized variant is for, measured on images: how much a sample changed OUTSIDE its region M (the same
M the stage trains with: the region box enlarged by the dilation α, ``dreamo_core.preference.regions``). Compare
the same prompt and seed sampled before and after a run: the localized stage should change the background less."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dreamo_core.preference.regions import box_mask, dilated_box


def outside_change(before: torch.Tensor, after: torch.Tensor, region_box: Sequence[int], dilation: float) -> float:
    """Mean |after − before| over the pixels (and channels) outside M. before, after: (H, W, 3) in [0, 1]."""
    if before.shape != after.shape or before.ndim != 3:
        raise ValueError(f"outside_change: two (H, W, 3) images of one size, got {tuple(before.shape)} and "
                         f"{tuple(after.shape)}")
    h, w = before.shape[:2]
    outside = 1.0 - box_mask(dilated_box(region_box, dilation, w, h), w, h)
    if not outside.sum() > 0:
        raise ValueError(f"outside_change: the region {list(region_box)} enlarged by {dilation} covers the image")
    diff = (after.float() - before.float()).abs() * outside
    return float(diff.sum() / (outside.sum() * before.shape[2]))
