"""Per-reference controls at run time: strength as an additive key bias in attention, active only inside a
sigma range. The bias math (log w, MASKED for w = 0) is dreamo_core.conditioning.reference_strength."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..dreamo_core.conditioning.reference_strength import MASKED, reference_key_bias

WHERE = "Apply DreamO Conditioning"


@dataclass(frozen=True)
class ReferenceControl:
    """Strength of one reference while ``sigma_end <= sigma <= sigma_start`` (outside: strength 0)."""

    strength: float = 1.0
    sigma_start: float = float("inf")
    sigma_end: float = 0.0

    def strength_at(self, sigma: float | None) -> float:
        if sigma is None or self.sigma_end <= sigma <= self.sigma_start:
            return self.strength
        return 0.0


def current_sigma(transformer_options: dict) -> float | None:
    """The sigma of this model call (ComfyUI puts the (B,) sigmas into transformer_options), or None."""
    sigmas = transformer_options.get("sigmas")
    if sigmas is None:
        return None
    return float(sigmas.reshape(-1)[0].item()) if isinstance(sigmas, torch.Tensor) else float(sigmas)


def strength_bias(weights: Sequence[float], text_tokens: int, target_tokens: int, ref_tokens: Sequence[int],
                  batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(B, 1, 1, L) additive attention bias over the ``[text | target | refs]`` keys: log(w_k) on reference k."""
    bias = reference_key_bias(text_tokens, target_tokens, ref_tokens, weights)  # (L,)
    return bias.to(device=device, dtype=dtype).view(1, 1, 1, -1).expand(batch, 1, 1, -1)


def merged_mask(existing: torch.Tensor | None, bias: torch.Tensor) -> torch.Tensor:
    """``existing`` attention mask (bool keep-mask or float bias, [L,L] / [B,L,L] / [B,H,L,L] / [B,1,1,L]) plus
    the (B, 1, 1, L) strength ``bias``; ValueError if its key length is not L = text + all image tokens."""
    if existing is None:
        return bias
    if existing.shape[-1] != bias.shape[-1] or existing.ndim not in (2, 3, 4):
        raise ValueError(
            f"{WHERE}: another node set an attention mask of shape {tuple(existing.shape)}, which does not cover the "
            f"{bias.shape[-1]} text + image + reference tokens; reference strength cannot be combined with it "
            "(set all reference strengths to 1 or remove the other mask)")
    if existing.dtype == torch.bool:
        existing = torch.zeros(existing.shape, dtype=bias.dtype, device=bias.device).masked_fill(~existing, MASKED)
    while existing.ndim < 4:
        existing = existing.unsqueeze(1 if existing.ndim == 3 else 0)  # [L,L] -> [1,L,L] -> [B,1,L,L]
    return existing.to(device=bias.device, dtype=bias.dtype) + bias
