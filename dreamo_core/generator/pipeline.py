"""Standalone DreamO text+references -> image generator on diffusers components.

Follows the official ``DreamOPipeline.__call__``: CPU-seeded noise, references VAE-encoded and packed,
diagonal ids, condition embeddings, sigmas linspace(1, 1/N, N) shifted by mu of the noisy length,
first-step guidance, optional true CFG whose negative pass has no references and no embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from ..conditioning.embeddings import ConditionEmbeddings, check_reference_indices
from ..conditioning.packing import denormalize_latents, normalize_latents, pack_latents, unpack_latents
from ..conditioning.placeholders import validate_placeholders
from ..conditioning.placement import Box
from ..conditioning.reference_images import prepare_reference, to_model_range
from ..conditioning.reference_strength import (
    DEFAULT_REFERENCE_OPTIONS,
    ReferenceControl,
    check_percent_range,
    strength_to_bias,
)
from ..spec import FLUX_DEV
from .flux_forward import ReferenceTokens, dreamo_transformer_forward, true_cfg_velocity
from .schedule import dreamo_sigmas, flux_mu, percent_to_sigma

Progress = Callable[[int, int], None]


class PromptEncoder(Protocol):
    def encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """prompt -> (prompt_embeds (1, T, J), pooled (1, P))."""
        ...


@dataclass
class ReferenceInput:
    """A user reference. image: (H, W, C) in [0, 1]; mask: optional (H, W) foreground; index: 1..9 (default: the
    next index no other reference names). Controls as the nodes' DreamO Reference Options: strength w (log w on its
    attention keys), active from start_percent to end_percent of the schedule, optional placement box."""

    image: torch.Tensor
    task: str = "ip"
    index: int | None = None
    mask: torch.Tensor | None = None
    strength: float = DEFAULT_REFERENCE_OPTIONS.strength
    start_percent: float = DEFAULT_REFERENCE_OPTIONS.start_percent
    end_percent: float = DEFAULT_REFERENCE_OPTIONS.end_percent
    box: Box | None = DEFAULT_REFERENCE_OPTIONS.box

    def check(self, where: str) -> None:
        """ValueError naming ``where`` for a strength or step range DreamO cannot use (before any model work)."""
        try:
            strength_to_bias(self.strength)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        check_percent_range(self.start_percent, self.end_percent, where)

    def control(self, mu: float) -> ReferenceControl:
        """Strength and its sigma range on the generator's schedule (time shift ``mu``)."""
        return ReferenceControl(self.strength, percent_to_sigma(self.start_percent, mu),
                                percent_to_sigma(self.end_percent, mu))


def reference_indices(refs: Sequence[ReferenceInput], max_index: int = FLUX_DEV.max_refs) -> list[int]:
    """Each reference's DreamO index: its own, else the lowest index no reference names (``a index=2, b`` gives
    2, 1); ValueError for an index out of range or used twice."""
    taken = {r.index for r in refs if r.index is not None}
    free = (k for k in range(1, max_index + 1) if k not in taken)
    indices = [r.index if r.index is not None else next(free, max_index + 1) for r in refs]
    check_reference_indices(indices, max_index, "references")
    return indices


@dataclass
class GenerationSettings:
    width: int = 1024
    height: int = 1024
    steps: int = 12
    guidance: float = 4.5
    first_step_guidance: float | None = None  # None: same as guidance (the app's default)
    seed: int = 0
    ref_res: int = 512
    true_cfg: float = 1.0  # > 1 enables the official true-CFG pass (needs negative_prompt)
    negative_prompt: str = ""
    neg_guidance: float = 3.5

    def validate(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 64 or v % 16:
                raise ValueError(f"{name} must be a multiple of 16 and >= 64, got {v!r}")
        if self.steps < 1 or self.steps > 200:
            raise ValueError(f"steps must be between 1 and 200, got {self.steps}")
        if self.true_cfg < 1.0:
            raise ValueError(f"true_cfg must be >= 1 (1 disables it), got {self.true_cfg}")


def check_request(prompt: str, refs: Sequence[ReferenceInput], settings: GenerationSettings) -> list[int]:
    """Every check that needs no model (settings, indices, controls, placeholders); returns the indices."""
    settings.validate()
    for i, r in enumerate(refs):
        r.check(f"reference {i + 1}")
    indices = reference_indices(refs)
    validate_placeholders(prompt, indices)
    return indices


class DreamOGenerator:
    """Holds loaded components; ``generate`` runs one image (batch size 1, as the official pipeline)."""

    def __init__(self, transformer: nn.Module, vae: nn.Module, prompt_encoder: PromptEncoder, scheduler,
                 tables: ConditionEmbeddings | None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.transformer, self.vae, self.prompt_encoder, self.scheduler = transformer, vae, prompt_encoder, scheduler
        self.tables = tables.to(device=device, dtype=dtype) if tables is not None else None
        self.device, self.dtype = torch.device(device), dtype

    def encode_reference(self, ref: ReferenceInput, index: int, ref_res: int, seed: int) -> ReferenceTokens:
        """One reference -> packed clean model latents (1, h/16 * w/16, 64). Uses the posterior mode (deterministic)."""
        prepared = prepare_reference(ref.image, ref.task, ref_res, ref.mask)
        x = to_model_range(prepared.pixels).to(self.device, self.vae.dtype)
        z = self.vae.encode(x).latent_dist.mode()
        z = normalize_latents(z, self.vae.config.shift_factor, self.vae.config.scaling_factor)
        return ReferenceTokens(pack_latents(z).to(self.dtype), prepared.token_grid, index, ref.box)

    def initial_noise(self, settings: GenerationSettings) -> torch.Tensor:
        """(1, 16, H/8, W/8) noise from a CPU generator, drawn in the model dtype (official behaviour)."""
        g = torch.Generator("cpu").manual_seed(settings.seed)
        shape = (1, 16, settings.height // 8, settings.width // 8)
        return torch.randn(shape, generator=g, dtype=self.dtype).to(self.device)

    @torch.no_grad()
    def generate(self, prompt: str, refs: Sequence[ReferenceInput] = (), settings: GenerationSettings | None = None,
                 progress: Progress | None = None) -> torch.Tensor:
        """-> image (H, W, 3) float in [0, 1] on CPU."""
        s = settings or GenerationSettings()
        indices = check_request(prompt, refs, s)
        if refs and self.tables is None:
            raise ValueError("references need the DreamO embeddings: pass the original dreamo.safetensors or embedding.safetensors")
        ref_tokens = [self.encode_reference(r, k, s.ref_res, s.seed) for r, k in zip(refs, indices)]
        embeds, pooled = (t.to(self.device, self.dtype) for t in self.prompt_encoder.encode(prompt))
        if s.true_cfg > 1:
            neg_embeds, neg_pooled = (t.to(self.device, self.dtype) for t in self.prompt_encoder.encode(s.negative_prompt))
        grid = (s.height // 16, s.width // 16)
        latents = pack_latents(self.initial_noise(s))
        mu = flux_mu(grid[0] * grid[1])
        self.scheduler.set_timesteps(sigmas=dreamo_sigmas(s.steps), mu=mu, device=self.device)
        timesteps = self.scheduler.timesteps
        controls = [r.control(mu) for r in refs]
        for i, t in enumerate(timesteps):
            sigma = (t / 1000).expand(1).to(self.dtype)
            g = s.guidance if i > 0 or s.first_step_guidance is None else s.first_step_guidance
            guidance = torch.full((1,), g, device=self.device, dtype=torch.float32)
            strengths = [c.strength_at(float(t) / 1000) for c in controls]
            v = dreamo_transformer_forward(self.transformer, latents, grid, ref_tokens, sigma, guidance, pooled,
                                           embeds, self.tables, strengths=strengths)
            if s.true_cfg > 1:
                neg_g = torch.full((1,), s.neg_guidance, device=self.device, dtype=torch.float32)
                v_neg = dreamo_transformer_forward(self.transformer, latents, grid, [], sigma, neg_g, neg_pooled,
                                                   neg_embeds, None)
                v = true_cfg_velocity(v, v_neg, s.true_cfg)
            latents = self.scheduler.step(v, t, latents, return_dict=False)[0]
            if progress is not None:
                progress(i + 1, len(timesteps))
        return self.decode(latents, grid)

    def decode(self, latents: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(1, L, 64) model latents -> (H, W, 3) in [0, 1]."""
        z = unpack_latents(latents, *grid)
        z = denormalize_latents(z, self.vae.config.shift_factor, self.vae.config.scaling_factor)
        x = self.vae.decode(z.to(self.vae.dtype), return_dict=False)[0]
        return ((x[0].float().permute(1, 2, 0) + 1) / 2).clamp(0, 1).cpu()
