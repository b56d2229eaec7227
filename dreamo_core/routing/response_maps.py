"""Routing response maps for display: the trainer's L_route quantity, sliced out of a joint attention call.

For each reference: its tokens' queries against the noisy-image keys, averaged over reference tokens and heads
(``dreamo_core.routing.losses.reference_response``; mode "softmax" is the trainer's default, "logits" the paper's raw Eq. 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .losses import reference_response


def joint_attention_responses(q: torch.Tensor, k: torch.Tensor, ref_slices: Sequence[slice], image_slice: slice,
                       mode: str = "softmax") -> torch.Tensor:
    """q, k: (B, heads, L, d) (after RoPE, ComfyUI's layout) -> (B, n_refs, L_img) response maps."""
    if q.ndim != 4 or q.shape != k.shape:
        raise ValueError(f"joint_attention_responses expects q and k of equal shape (B, heads, L, d), got {tuple(q.shape)}, {tuple(k.shape)}")
    k_img = k[:, :, image_slice].transpose(1, 2)  # (B, L_img, H, d)
    return torch.stack([reference_response(q[:, :, sl].transpose(1, 2), k_img, mode) for sl in ref_slices], dim=1)


def normalize_map(m: torch.Tensor) -> torch.Tensor:
    """(..., L) -> min-max scaled to [0, 1] per map (for display as a MASK)."""
    lo, hi = m.amin(dim=-1, keepdim=True), m.amax(dim=-1, keepdim=True)
    return (m - lo) / (hi - lo).clamp_min(1e-12)
