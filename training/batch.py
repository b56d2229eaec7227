"""One step's data: the rows of a batch plan loaded and encoded (``Batch``), the kept reference tokens of the
stage's drop, the step's noise and t (pure functions of (seed, step), drawn for the global batch), and which
shard of it a process takes in each micro-step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dreamo_core.generator.flux_forward import ReferenceTokens

from .codec import Codec, encode_tokens
from .config import TrainConfig
from .data import BatchPlan, LoadedSample, RefRow, load_sample


@dataclass
class Batch:
    """One process's share of a step. latents (B, N, 64); masks (n_refs, B, N); holder (B,) 1 = placeholders."""

    latents: torch.Tensor
    grid: tuple[int, int]
    refs: list[ReferenceTokens]
    masks: torch.Tensor
    captions: list[str]
    holder: torch.Tensor
    ref_keep: torch.Tensor | None


def keep_indices(lengths: list[int], drop: float, seed: int) -> torch.Tensor | None:
    """Sorted positions of the reference tokens to keep (at least one per reference), or None for no drop."""
    if drop <= 0:
        return None
    g = torch.Generator().manual_seed(seed)
    keep, start = [], 0
    for n in lengths:
        k = max(1, round(n * (1 - drop)))
        keep.append(torch.randperm(n, generator=g)[:k].sort().values + start)
        start += n
    return torch.cat(keep)


def encode_references(samples: list[LoadedSample], codec: Codec, device: torch.device,
                      rows: Sequence[RefRow] | None = None) -> list[ReferenceTokens]:
    """Reference j of every sample, encoded as one batch: (B, tokens, 64) per reference index, with its placement
    box from ``rows`` (the bucket's references: one bucket has the same indices, sizes and boxes in every row)."""
    refs = []
    for j, index in enumerate(samples[0].indices):
        tokens, rgrid = encode_tokens(codec, torch.stack([s.refs[j] for s in samples]).to(device))
        refs.append(ReferenceTokens(tokens, rgrid, index, rows[j].box if rows is not None else None))
    return refs


def make_batch(plan: BatchPlan, codec: Codec, ref_res: int, drop: float, device: torch.device) -> Batch:
    """Load, encode and stack the plan's rows (all from one bucket)."""
    samples = [load_sample(row, ref_res, plain) for row, plain in zip(plan.rows, plan.use_plain)]
    latents, grid = encode_tokens(codec, torch.stack([s.target for s in samples]).to(device))
    refs = encode_references(samples, codec, device, plan.rows[0].refs)
    masks = torch.stack([s.masks for s in samples], dim=1).to(device)  # (n_refs, B, N)
    holder = torch.tensor([float(s.has_placeholders) for s in samples], device=device)
    keep = keep_indices([r.tokens.shape[1] for r in refs], drop, plan.ref_keep_seed)
    return Batch(latents, grid, refs, masks, [s.caption for s in samples], holder, keep)


def step_noise(cfg: TrainConfig, step: int, shape: tuple[int, ...], rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise (B_local, N, C) and t (B_local,) drawn for the GLOBAL batch from (seed, step), then sharded, so
    any number of processes sees the same numbers as one process would."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    global_b = shape[0] * world
    noise = torch.randn(global_b, *shape[1:], generator=g)
    u = torch.randn(global_b, generator=g)
    t = torch.sigmoid(u) if cfg.timestep_sampling == "logit_normal" else torch.rand(global_b, generator=g)
    return noise[rank::world], t[rank::world]


def micro_shard(j: int, rank: int, world: int, accum: int) -> tuple[int, int]:
    """(shard, shards) of micro-step j on process ``rank``: the step's global batch (batch_size x grad_accum
    rows, one noise draw) is split into grad_accum x world shards, rows ``shard::shards``; with grad_accum 1
    this is ``rank::world`` as without accumulation."""
    return j * world + rank, accum * world
