"""Per-batch-item condition embeddings: samplers may batch the positive (cond) and negative (uncond)
prompts into one forward pass; only cond items get DreamO's embedding (the negative pass has none)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .embeddings import ConditionEmbeddings, build_condition_embeddings

COND = 0  # ComfyUI's cond_or_uncond marker for the positive prompt (1 = negative)


def cond_item_mask(cond_or_uncond: Sequence[int] | None, batch: int) -> torch.Tensor:
    """(batch,) bool, True for positive-prompt items. Each entry of ``cond_or_uncond`` covers one chunk of
    ``batch // len(cond_or_uncond)`` consecutive items; ``None`` or empty means every item is positive."""
    if not cond_or_uncond:
        return torch.ones(batch, dtype=torch.bool)
    chunks = len(cond_or_uncond)
    if batch % chunks:
        raise ValueError(f"DreamO: batch of {batch} items cannot be split into {chunks} cond/uncond chunks")
    flags = torch.tensor([c == COND for c in cond_or_uncond], dtype=torch.bool)
    return flags.repeat_interleave(batch // chunks)


def batched_condition_embeddings(
    tables: ConditionEmbeddings,
    target_tokens: int,
    ref_tokens: Sequence[int],
    indices: Sequence[int],
    cond_items: torch.Tensor,
) -> torch.Tensor:
    """(B, L, D) with L = target_tokens + sum(ref_tokens): the DreamO embedding for items where
    ``cond_items`` (B,) is True, exact zeros elsewhere. Computed in the tables' dtype (as the official code)."""
    emb = build_condition_embeddings(tables, target_tokens, ref_tokens, indices)  # (L, D)
    mask = cond_items.to(device=emb.device, dtype=emb.dtype)[:, None, None]  # (B, 1, 1)
    return emb[None] * mask
