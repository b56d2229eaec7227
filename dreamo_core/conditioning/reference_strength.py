"""Per-reference strength as an additive attention bias on that reference's keys (DreamTuner-style).

softmax(q·kᵀ/√d + log w) multiplies the attention weight of every key of the reference by w before
renormalising: w = 1 is the plain DreamO result (bias 0), w = 0 removes the reference from every query's view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

MASKED = -1.0e4  # stands in for log(0): exp(-1e4) underflows to exactly 0 in every float dtype, without -inf NaN risks


def strength_to_bias(weight: float) -> float:
    """log(w), with w = 0 mapped to MASKED. Raises for negative or non-finite w."""
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"reference strength must be a finite number >= 0, got {weight}")
    return MASKED if weight == 0 else max(math.log(weight), MASKED)


def check_percent_range(start: float, end: float, where: str = "start/end percent") -> None:
    """ValueError naming ``where`` unless 0 <= start <= end <= 1 (fractions of the sampling schedule)."""
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"{where}: need 0 <= start <= end <= 1 (start_percent, end_percent), got start={start}, end={end}")


def reference_key_bias(text_tokens: int, target_tokens: int, ref_tokens: Sequence[int], weights: Sequence[float]) -> torch.Tensor:
    """(text + target + sum(ref_tokens),) float32 bias over the joint key sequence ``[text | target | ref1 ...]``:
    0 on text and target keys, log(w_k) on the keys of reference k."""
    if len(ref_tokens) != len(weights):
        raise ValueError(f"reference_key_bias: {len(ref_tokens)} references but {len(weights)} strengths")
    parts = [torch.zeros(text_tokens + target_tokens)]
    parts += [torch.full((n,), strength_to_bias(w)) for n, w in zip(ref_tokens, weights)]
    return torch.cat(parts)


def is_neutral(weights: Sequence[float]) -> bool:
    """True when every strength is exactly 1 (no bias needed: the plain DreamO forward, bit for bit)."""
    return all(w == 1.0 for w in weights)
