"""RoPE position ids: target grid at (0, r, c), references on DreamO's diagonal offsets."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .placement import Box, placed_reference_ids
from .token_layout import TokenGrid


def grid_position_ids(rows: int, cols: int, start_row: float = 0, start_col: float = 0,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """(rows*cols, 3) float32 ids (0, start_row + r, start_col + c), row-major, built on ``device``."""
    if rows <= 0 or cols <= 0:
        raise ValueError(f"grid_position_ids: token grid must be non-empty, got {rows}x{cols}")
    r = torch.arange(rows, dtype=torch.float32, device=device)[:, None].expand(rows, cols) + start_row
    c = torch.arange(cols, dtype=torch.float32, device=device)[None, :].expand(rows, cols) + start_col
    return torch.stack([torch.zeros_like(r), r, c], dim=-1).reshape(rows * cols, 3)


def reference_offsets(target: TokenGrid, refs: Sequence[TokenGrid]) -> list[TokenGrid]:
    """Start (row, col) of each reference: begins at the target's (rows, cols), then advances per axis
    by each reference's own rows / cols (a diagonal, non-overlapping layout)."""
    start_r, start_c = target
    offsets = []
    for rows, cols in refs:
        offsets.append((start_r, start_c))
        start_r += rows
        start_c += cols
    return offsets


def dreamo_position_ids(target: TokenGrid, refs: Sequence[TokenGrid], dtype: torch.dtype = torch.float32,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """(L_target + sum L_ref, 3) ids for ``[target | ref1 | ref2 ...]``.

    Built in float32 and cast to ``dtype`` at the end, as the official pipeline does (so bf16 rounds ids
    above 256 to even values exactly like the official code).
    """
    parts = [grid_position_ids(*target, device=device)]
    for (rows, cols), (r0, c0) in zip(refs, reference_offsets(target, refs)):
        parts.append(grid_position_ids(rows, cols, r0, c0, device))
    return torch.cat(parts, dim=0).to(dtype)


def token_grid(latent_hw: tuple[int, int], patch_size: int = 2) -> TokenGrid:
    """Token grid of a latent (H, W): ceil(H/p) x ceil(W/p) (ComfyUI pads odd sizes)."""
    h, w = latent_hw
    return (-(-h // patch_size), -(-w // patch_size))


def reference_position_ids(target: TokenGrid, refs: Sequence[TokenGrid], boxes: Sequence[Box | None] = (),
                           dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """(L_target + sum L_ref, 3) ids of ``[target | ref1 ...]`` on ``device``: DreamO's diagonal ids, except that a
    reference with a placement box gets ids mapped into that box (DreamFuse's positional affine,
    ``placed_reference_ids``). Every id is rounded through ``dtype`` as the official pipeline's (bf16: ids above
    256 become even). Built with static shapes only (no data-dependent ops: safe under torch.compile)."""
    boxes = list(boxes) or [None] * len(refs)
    parts = [grid_position_ids(*target, device=device)]
    for grid, box, (r0, c0) in zip(refs, boxes, reference_offsets(target, refs)):
        parts.append(grid_position_ids(*grid, r0, c0, device) if box is None
                     else placed_reference_ids(grid, box, target, device))
    return torch.cat(parts, dim=0).to(dtype)
