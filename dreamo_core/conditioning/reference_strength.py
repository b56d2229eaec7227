"""Per-reference strength as an additive attention bias on that reference's keys (DreamTuner-style).

softmax(q·kᵀ/√d + log w) multiplies the attention weight of every key of the reference by w before
renormalising: w = 1 is the plain DreamO result (bias 0), w = 0 removes the reference from every query's view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..checks import finite_number
from .placement import Box
from .token_layout import reference_spans

MASKED = -1.0e4  # stands in for log(0): exp(-1e4) underflows to exactly 0 in every float dtype, without -inf NaN risks


def strength_to_bias(weight: float) -> float:
    """log(w), with w = 0 mapped to MASKED. Raises for negative or non-finite w."""
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"reference strength must be a finite number >= 0, got {weight}")
    return MASKED if weight == 0 else max(math.log(weight), MASKED)


def check_percent_range(start: float, end: float, where: str = "start/end percent") -> None:
    """ValueError naming ``where`` unless 0 <= start <= end <= 1 (fractions of the sampling schedule)."""
    for name, v in (("start_percent", start), ("end_percent", end)):
        finite_number(v, f"{where}: {name}")
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"{where}: need 0 <= start <= end <= 1 (start_percent, end_percent), got start={start}, end={end}")


def reference_key_bias(text_tokens: int, target_tokens: int, ref_tokens: Sequence[int], weights: Sequence[float],
                       device: torch.device | str | None = None) -> torch.Tensor:
    """(text + target + sum(ref_tokens),) float32 bias over the joint key sequence ``[text | target | ref1 ...]``:
    0 on text and target keys, log(w_k) on the keys of reference k (built on ``device``)."""
    if len(ref_tokens) != len(weights):
        raise ValueError(f"reference_key_bias: {len(ref_tokens)} references but {len(weights)} strengths")
    parts = [torch.zeros(text_tokens + target_tokens, device=device)]
    parts += [torch.full((n,), strength_to_bias(w), device=device) for n, w in zip(ref_tokens, weights)]
    return torch.cat(parts)


def is_neutral(weights: Sequence[float]) -> bool:
    """True when every strength is exactly 1 (no bias needed: the plain DreamO forward, bit for bit)."""
    return all(w == 1.0 for w in weights)


@dataclass(frozen=True)
class ReferenceOptions:
    """A user's controls of one reference (DreamO Reference Options, ``dreamo --ref`` options): strength w, active
    from start_percent to end_percent of the schedule, optional placement box (None: DreamO's diagonal positions).
    The defaults, ``DEFAULT_REFERENCE_OPTIONS``, are plain DreamO."""

    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    box: Box | None = None


DEFAULT_REFERENCE_OPTIONS = ReferenceOptions()


@dataclass(frozen=True)
class ReferenceControl:
    """Strength of one reference while ``sigma_end <= sigma <= sigma_start`` (outside: strength 0)."""

    strength: float = DEFAULT_REFERENCE_OPTIONS.strength
    sigma_start: float = float("inf")
    sigma_end: float = 0.0

    def strength_at(self, sigma: float | None) -> float:
        if sigma is None or self.sigma_end <= sigma <= self.sigma_start:
            return self.strength
        return 0.0

    @property
    def full_range(self) -> bool:
        """Active over the whole schedule (sigmas of a flow model lie in 0..1)."""
        return self.sigma_start >= 1.0 and self.sigma_end <= 0.0

    @property
    def is_neutral(self) -> bool:
        """Strength 1 over the whole schedule: plain DreamO, no bias ever."""
        return self.strength == 1.0 and self.full_range


def strength_bias(weights: Sequence[float], text_tokens: int, target_tokens: int, ref_tokens: Sequence[int],
                  batch: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """(B, 1, 1, L) additive attention bias over the ``[text | target | refs]`` keys: log(w_k) on reference k."""
    controls = [ReferenceControl(w) for w in weights]
    return scheduled_key_bias(controls, None, text_tokens, target_tokens, ref_tokens, batch, dtype, device)


def scheduled_key_bias(controls: Sequence[ReferenceControl], sigma: torch.Tensor | None, text_tokens: int,
                       target_tokens: int, ref_tokens: Sequence[int], batch: int, dtype: torch.dtype,
                       device: torch.device | str) -> torch.Tensor:
    """(B, 1, 1, L) ``reference_key_bias`` with each reference's strength taken at ``sigma`` (a tensor whose first
    element is this call's sigma; None = always active), computed on the device with ``torch.where``: no host
    sync and no data-dependent shapes (safe under torch.compile)."""
    if len(controls) != len(ref_tokens):
        raise ValueError(f"scheduled_key_bias: {len(ref_tokens)} references but {len(controls)} controls")
    bias = reference_key_bias(text_tokens, target_tokens, ref_tokens, [c.strength for c in controls], device)
    if sigma is not None and not all(c.full_range for c in controls):
        s = sigma.reshape(-1)[0].to(device=device, dtype=torch.float32)
        pieces = [bias[: text_tokens + target_tokens]]
        for c, (a, b) in zip(controls, reference_spans(text_tokens + target_tokens, ref_tokens)):
            active = (s <= c.sigma_start) & (s >= c.sigma_end)
            pieces.append(bias[a:b] if c.full_range else torch.where(active, bias[a:b], MASKED))
        bias = torch.cat(pieces)
    return bias.to(dtype).view(1, 1, 1, -1).expand(batch, 1, 1, -1)


def batched_key_bias(item_controls: Sequence[Sequence[ReferenceControl] | None], sigma: torch.Tensor | None,
                     text_tokens: int, target_tokens: int, ref_tokens: Sequence[int], dtype: torch.dtype,
                     device: torch.device | str) -> torch.Tensor:
    """(B, 1, 1, L) ``scheduled_key_bias`` of each batch item's own controls (None: an item without DreamO
    references, bias 0), one build per distinct control list."""
    built: dict[tuple[ReferenceControl, ...], torch.Tensor] = {}
    for controls in item_controls:
        if controls is not None and tuple(controls) not in built:
            built[tuple(controls)] = scheduled_key_bias(controls, sigma, text_tokens, target_tokens, ref_tokens, 1,
                                                        dtype, device)
    if len(built) == 1 and all(c is not None for c in item_controls):
        return next(iter(built.values())).expand(len(item_controls), 1, 1, -1)
    zeros = torch.zeros(1, 1, 1, text_tokens + target_tokens + sum(ref_tokens), dtype=dtype, device=device)
    return torch.cat([zeros if c is None else built[tuple(c)] for c in item_controls])


def merged_mask(existing: torch.Tensor | None, bias: torch.Tensor, where: str = "DreamO") -> torch.Tensor:
    """``existing`` attention mask (bool keep-mask or float bias, [L,L] / [B,L,L] / [B,H,L,L] / [B,1,1,L]) plus
    the (B, 1, 1, L) strength ``bias``; ValueError naming ``where`` if its key length is not L."""
    if existing is None:
        return bias
    if existing.shape[-1] != bias.shape[-1] or existing.ndim not in (2, 3, 4):
        raise ValueError(
            f"{where}: another node set an attention mask of shape {tuple(existing.shape)}, which does not cover the "
            f"{bias.shape[-1]} text + image + reference tokens; reference strength cannot be combined with it "
            "(set all reference strengths to 1 or remove the other mask)")
    if existing.dtype == torch.bool:
        existing = torch.zeros(existing.shape, dtype=bias.dtype, device=bias.device).masked_fill(~existing, MASKED)
    while existing.ndim < 4:
        existing = existing.unsqueeze(1 if existing.ndim == 3 else 0)  # [L,L] -> [1,L,L] -> [B,1,L,L]
    return existing.to(device=bias.device, dtype=bias.dtype) + bias
