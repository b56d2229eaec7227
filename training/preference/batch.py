"""One step's pairs, encoded: the preferred targets in ``latents`` (the step's noise and t are drawn for them, one
per pair, and shared by the rejected), the rejected ones, the region token weights, and the conditioning both
members share (references, captions)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dreamo_core.generator.flux_forward import ReferenceTokens

from ..batch import encode_references
from ..codec import Codec, encode_tokens
from ..data import BatchPlan
from .dataset import load_pair


@dataclass
class PairBatch:
    """latents (B, N, 64) preferred; rejected (B, N, 64); region (B, N) M's token weights; refs / captions / grid
    as the trainer's ``Batch`` (what ``save_sample_strip`` reads); ``ref_keep`` always None (no token drop)."""

    latents: torch.Tensor
    rejected: torch.Tensor
    region: torch.Tensor
    grid: tuple[int, int]
    refs: list[ReferenceTokens]
    captions: list[str]
    ref_keep: None = None


def make_pair_batch(plan: BatchPlan, codec: Codec, ref_res: int, dilation: float, device: torch.device) -> PairBatch:
    """Load, encode and stack the plan's pairs (all from one bucket)."""
    pairs = [load_pair(row, ref_res, plain, dilation) for row, plain in zip(plan.rows, plan.use_plain)]
    latents, grid = encode_tokens(codec, torch.stack([p.sample.target for p in pairs]).to(device))
    rejected, _ = encode_tokens(codec, torch.stack([p.rejected for p in pairs]).to(device))
    refs = encode_references([p.sample for p in pairs], codec, device, plan.rows[0].refs)
    region = torch.stack([p.region for p in pairs]).to(device)
    return PairBatch(latents, rejected, region, grid, refs, [p.sample.caption for p in pairs])
