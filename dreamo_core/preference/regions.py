"""The localized region M of a preference pair in pixels: DreamFuse's foreground box enlarged by a dilation factor α
(about its centre, clipped to the image), drawn as a 0/1 mask."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels, x1 / y1 exclusive


def dilated_box(box: Sequence[float], alpha: float, width: int, height: int) -> Box:
    """``box`` (x0, y0, x1, y1) scaled by ``alpha`` >= 1 about its centre, widened to whole pixels (the enlarged
    box is inside the result) and clipped to the ``width`` x ``height`` image."""
    if alpha < 1:
        raise ValueError(f"dilated_box: the dilation must be >= 1, got {alpha}")
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, alpha * (x1 - x0) / 2, alpha * (y1 - y0) / 2
    return (max(0, math.floor(cx - hw)), max(0, math.floor(cy - hh)),
            min(width, math.ceil(cx + hw)), min(height, math.ceil(cy + hh)))


def box_mask(box: Box, width: int, height: int) -> torch.Tensor:
    """(height, width, 1) float32: 1 inside ``box``, 0 outside."""
    x0, y0, x1, y1 = box
    mask = torch.zeros(height, width, 1)
    mask[y0:y1, x0:x1] = 1.0
    return mask
