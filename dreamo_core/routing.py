"""Routing response maps: how strongly each reference's queries address the target image's keys.

The quantity of DreamO's L_route (paper Eq. 2, no softmax): M_i = mean over reference-i tokens (and heads) of
q·kᵀ/√d against the noisy-image keys. Because the mean is linear it equals (mean of the reference queries)·Kᵀ/√d,
computed in O(L) memory instead of O(L_ref · L_img).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def reference_response(q: torch.Tensor, k: torch.Tensor, ref_slices: Sequence[slice], image_slice: slice) -> torch.Tensor:
    """q, k: (B, heads, L, d) (after RoPE) -> (B, n_refs, L_img) response maps, averaged over heads."""
    if q.ndim != 4 or q.shape != k.shape:
        raise ValueError(f"reference_response expects q and k of equal shape (B, heads, L, d), got {tuple(q.shape)}, {tuple(k.shape)}")
    scale = q.shape[-1] ** -0.5
    k_img = k[:, :, image_slice].float()  # (B, H, L_img, d)
    maps = []
    for sl in ref_slices:
        q_mean = q[:, :, sl].float().mean(dim=2, keepdim=True)  # (B, H, 1, d)
        maps.append((q_mean @ k_img.transpose(-1, -2)).squeeze(2).mean(dim=1) * scale)  # (B, L_img)
    return torch.stack(maps, dim=1)


def normalize_map(m: torch.Tensor) -> torch.Tensor:
    """(..., L) -> min-max scaled to [0, 1] per map (for display as a MASK)."""
    lo, hi = m.amin(dim=-1, keepdim=True), m.amax(dim=-1, keepdim=True)
    return (m - lo) / (hi - lo).clamp_min(1e-12)
