"""Sampling and response-map evaluation during / after training (both without gradients); a run's sample PNGs.

Samples use the plain diffusers DreamO forward ``dreamo_core.generator.flux_forward.dreamo_transformer_forward`` with
the trained tables, i.e. exactly what inference will run, on the generator's schedule and noise: the noise is
``randn(B, 16, 2 rows, 2 cols)`` from a CPU generator seeded ``seed`` (as ``DreamOGenerator.initial_noise`` and
ComfyUI's ``prepare_noise``), packed; the sigmas are the official ``linspace(1, 1/steps, steps)`` time-shifted by
``flux_mu`` of the target's token count, then 0 (as the diffusers scheduler the generator uses, and ComfyUI's
``euler`` + ``simple`` scheduler on a FLUX model patched by ``ModelSamplingFlux`` with the image's size).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from dreamo_core.conditioning.packing import pack_latents
from dreamo_core.conditioning.position_ids import TokenGrid
from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward, true_cfg_velocity
from dreamo_core.generator.schedule import dreamo_sigmas, flux_mu

from .attention_capture import select_layers
from .batch import Batch
from .codec import Codec, decode_tokens
from .config import ROUTE_LAYERS
from .model import DreamOTrainModel


def initial_noise(batch: int, target_grid: TokenGrid, seed: int) -> torch.Tensor:
    """(B, N, 64) packed noise drawn as (B, 16, 2 rows, 2 cols) from a CPU generator seeded ``seed``."""
    g = torch.Generator("cpu").manual_seed(seed)
    return pack_latents(torch.randn(batch, 16, 2 * target_grid[0], 2 * target_grid[1], generator=g))


def shifted_sigmas(steps: int, n_tokens: int) -> torch.Tensor:
    """(steps + 1,) float32: ``dreamo_sigmas(steps)`` time-shifted by ``flux_mu(n_tokens)``, then 0."""
    mu = flux_mu(n_tokens)
    sig = [math.exp(mu) / (math.exp(mu) + (1.0 / s - 1.0)) for s in dreamo_sigmas(steps)]
    return torch.tensor(sig + [0.0], dtype=torch.float32)


@torch.no_grad()
def euler_sample(model: DreamOTrainModel, target_grid: TokenGrid, refs: list[ReferenceTokens], captions: list[str],
                 steps: int = 8, guidance: float = 3.5, seed: int = 0, noise: torch.Tensor | None = None,
                 true_cfg: float = 1.0, negative_prompt: str = "", neg_guidance: float = 3.5,
                 dreamo_without_refs: bool = False) -> torch.Tensor:
    """Rectified-flow Euler sampler from noise (sigma 1) to sigma 0 on ``shifted_sigmas``; ``refs=[]`` is plain
    text-to-image (no DreamO tables), unless ``dreamo_without_refs``: then the positive pass adds the target
    embedding as the official pipeline and the generator do for a DreamO model given no reference. ``true_cfg > 1`` adds the official true-CFG pass (``negative_prompt``, no
    references, no DreamO tables): ``v = v_neg + true_cfg * (v - v_neg)``. Returns packed latents (B, N, 64)."""
    if true_cfg < 1.0:
        raise ValueError(f"true_cfg must be >= 1 (1 disables it), got {true_cfg}")
    b, n = len(captions), target_grid[0] * target_grid[1]
    device = model.task_embedding.device
    z = (initial_noise(b, target_grid, seed) if noise is None else noise).to(device)
    prompt_embeds, pooled, _ = model.encode_text(captions)
    if true_cfg > 1:
        neg_embeds, neg_pooled, _ = model.encode_text([negative_prompt] * b)
        neg_g = torch.full((b,), neg_guidance, device=device)
    sigmas = shifted_sigmas(steps, n)
    g = torch.full((b,), guidance, device=device)
    tables = model.tables if refs or dreamo_without_refs else None
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        sigma = torch.full((b,), float(s), device=device)
        v = dreamo_transformer_forward(model.transformer, z, target_grid, refs, sigma, g, pooled, prompt_embeds, tables)
        if true_cfg > 1:
            v_neg = dreamo_transformer_forward(model.transformer, z, target_grid, [], sigma, neg_g, neg_pooled,
                                               neg_embeds, None)
            v = true_cfg_velocity(v, v_neg, true_cfg)
        z = z + (s_next - s) * v  # dz/dt = v = eps - z0
    return z


def save_sample_strip(model: DreamOTrainModel, codec: Codec, batch: Batch, path: Path, write: bool = True) -> None:
    """Sample the batch's first prompt with its references; write [refs | sample | target] as one PNG (under
    FSDP every process samples, a collective forward, and only ``write`` ones save)."""
    refs = [ReferenceTokens(r.tokens[:1], r.grid, r.index) for r in batch.refs]
    z = euler_sample(model, batch.grid, refs, batch.captions[:1])
    tiles = [decode_tokens(codec, r.tokens, r.grid)[0] for r in refs]
    tiles += [decode_tokens(codec, z, batch.grid)[0], decode_tokens(codec, batch.latents[:1], batch.grid)[0]]
    if not write:
        return
    h = max(x.shape[0] for x in tiles)
    tiles = [torch.nn.functional.pad(x, (0, 0, 0, 0, 0, h - x.shape[0]), value=1.0) for x in tiles]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((torch.cat(tiles, dim=1).clamp(0, 1) * 255).byte().cpu().numpy()).save(path)


@torch.no_grad()
def response_maps(model: DreamOTrainModel, latents: torch.Tensor, target_grid: TokenGrid, refs: list[ReferenceTokens],
                  captions: list[str], sigma: float = 0.5, patterns: tuple[str, ...] = ROUTE_LAYERS,
                  seed: int = 0) -> torch.Tensor:
    """Softmax response of each reference over the noisy target (attention probability, normalised over target
    tokens), averaged over the chosen layers, at noise level ``sigma``. Returns (n_refs, B, N), rows sum to 1."""
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents)
    z_t = (1 - sigma) * latents + sigma * noise
    b = latents.shape[0]
    layers = select_layers(model.transformer, patterns)
    _, cap = model(z_t, target_grid, refs, torch.full((b,), sigma), torch.full((b,), 3.5), captions,
                   capture_layers=layers, route_mode="softmax")
    return cap.stacked_route().mean(0) / latents.shape[1]


def mass_inside(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Attention mass falling inside the (binarised) masks: maps, masks (n_refs, B, N) -> (n_refs, B)."""
    return (maps * (masks > 0.5)).sum(-1)
