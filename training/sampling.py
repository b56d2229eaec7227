"""Sampling and response-map evaluation during / after training (both without gradients).

Samples use the plain diffusers DreamO forward ``dreamo_core.generator.flux_forward.dreamo_transformer_forward`` with
the trained tables, i.e. exactly what inference will run.
"""

from __future__ import annotations

import torch

from dreamo_core.conditioning.position_ids import TokenGrid
from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward

from .attention_capture import select_layers
from .model import DreamOTrainModel


@torch.no_grad()
def euler_sample(model: DreamOTrainModel, target_grid: TokenGrid, refs: list[ReferenceTokens], captions: list[str],
                 steps: int = 8, guidance: float = 3.5, seed: int = 0) -> torch.Tensor:
    """Rectified-flow Euler sampler from t=1 (noise) to t=0. Returns packed latents (B, N, 64)."""
    b, n = len(captions), target_grid[0] * target_grid[1]
    device = model.task_embedding.device
    z = torch.randn(b, n, 64, generator=torch.Generator().manual_seed(seed)).to(device)
    prompt_embeds, pooled, _ = model.encode_text(captions)
    sigmas = torch.linspace(1.0, 0.0, steps + 1)
    g = torch.full((b,), guidance, device=device)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        v = dreamo_transformer_forward(model.transformer, z, target_grid, refs, torch.full((b,), float(s), device=device),
                                       g, pooled, prompt_embeds, model.tables)
        z = z + (s_next - s) * v  # dz/dt = v = eps - z0
    return z


@torch.no_grad()
def response_maps(model: DreamOTrainModel, latents: torch.Tensor, target_grid: TokenGrid, refs: list[ReferenceTokens],
                  captions: list[str], sigma: float = 0.5, patterns: tuple[str, ...] = ("transformer_blocks.*",),
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
