"""A mask-free reference strength, to measure whether it would pay off: attention over the keys split at the
reference spans, each part by the fused (flash) kernel without a mask, the parts merged by their log-sum-exps
with log w added.

softmax(q·kᵀ/√d + b) with b = log w_g on the keys of group g equals Σ_g a_g·o_g with o_g the unmasked attention
over group g's keys and a_g = softmax_g(lse_g + log w_g) (lse_g: group g's log-sum-exp of the logits): exactly the
(B, 1, 1, L) bias the nodes and the generator pass to SDPA as a mask (``strength_bias``), which takes SDPA off its
flash kernels. Not used by the product: ComfyUI's ``attn1_patch`` hands over q, k, v and a mask only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

KeyGroup = tuple[int, int, float]  # [start, end) of the joint key sequence and its weight w


def key_groups(text_tokens: int, target_tokens: int, ref_tokens: Sequence[int], strengths: Sequence[float]
               ) -> list[KeyGroup]:
    """The keys ``[text | target | ref1 | ...]`` as groups of equal weight: text and target at 1, reference k at
    ``strengths[k]``; neighbours of equal weight merged."""
    groups = [(0, text_tokens + target_tokens, 1.0)]
    for n, w in zip(ref_tokens, strengths):
        start = groups[-1][1]
        groups[-1:] = [(groups[-1][0], start + n, w)] if groups[-1][2] == w else [groups[-1], (start, start + n, w)]
    return groups


def flash_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused unmasked attention of q (B, H, Lq, d) over k, v (B, H, Lk, d): (out (B, H, Lq, d), float32
    log-sum-exp of each query's logits (B, H, Lq)); CUDA's flash kernel, the CPU's flash kernel elsewhere."""
    if q.is_cuda:
        out, lse, *_ = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)
    else:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
    return out, lse


def key_split_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: Sequence[KeyGroup]) -> torch.Tensor:
    """softmax(q·kᵀ/√d + log w_g on group g's keys)·v (B, H, Lq, d) without a mask: one flash call per group
    (``key_groups``), merged in float32. A group of weight 0 is left out."""
    outs, lses = [], []
    for start, end, w in groups:
        if w > 0:
            out, lse = flash_with_lse(q, k[:, :, start:end], v[:, :, start:end])
            outs.append(out.float())
            lses.append(lse + math.log(w))
    shares = torch.softmax(torch.stack(lses), dim=0).unsqueeze(-1)  # (G, B, H, Lq, 1)
    return (shares * torch.stack(outs)).sum(dim=0).to(q.dtype)
