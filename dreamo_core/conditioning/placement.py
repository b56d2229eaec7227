"""Placement boxes: DreamFuse's positional affine applied to a reference's RoPE ids.

Instead of DreamO's diagonal offset, the ids of a reference's token (r, c) become s·p + t so that its grid lands
inside a box of the target grid (fractional ids; scaling compresses or stretches the spacing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .token_layout import TokenGrid


@dataclass(frozen=True)
class Box:
    """A region of the output: x, y, w, h as fractions of the output width/height (0..1)."""

    x: float
    y: float
    w: float
    h: float

    def __post_init__(self) -> None:
        for name in ("x", "y", "w", "h"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"box {name} must be a finite number, got {v!r}")
        if self.w <= 0 or self.h <= 0:
            raise ValueError(f"box width and height must be > 0, got w={self.w}, h={self.h}")
        if self.x < 0 or self.y < 0 or self.x + self.w > 1 + 1e-6 or self.y + self.h > 1 + 1e-6:
            raise ValueError(f"box ({self.x}, {self.y}, {self.w}, {self.h}) must lie inside the image (fractions 0..1)")

    @staticmethod
    def from_pixels(x: float, y: float, w: float, h: float, width: int, height: int) -> Box:
        """A box in output pixels -> fractions."""
        return Box(x / width, y / height, w / width, h / height)


def placed_reference_ids(ref: TokenGrid, box: Box, target: TokenGrid,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """(rows*cols, 3) float32 ids of a reference mapped into ``box`` of the ``target`` token grid.

    Token centres map to centres: id_row(r) = top + (r + 0.5)·s_y − 0.5 with s_y = box_rows / rows, top = y·T_rows
    (likewise for columns), i.e. the affine s·p + t of DreamFuse with t = top + 0.5·s − 0.5.
    """
    rows, cols = ref
    s_y, s_x = box.h * target[0] / rows, box.w * target[1] / cols
    t_y, t_x = box.y * target[0] + 0.5 * s_y - 0.5, box.x * target[1] + 0.5 * s_x - 0.5
    r = torch.arange(rows, dtype=torch.float32, device=device)[:, None].expand(rows, cols) * s_y + t_y
    c = torch.arange(cols, dtype=torch.float32, device=device)[None, :].expand(rows, cols) * s_x + t_x
    return torch.stack([torch.zeros_like(r), r, c], dim=-1).reshape(rows * cols, 3)
