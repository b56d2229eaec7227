"""Input checks shared by the nodes, the generator and the file parsers: finite numbers and finite tensors.

ComfyUI validates FLOAT inputs only by min/max, and ``NaN < min`` is False, so a workflow JSON with ``NaN`` (or
``Infinity``) passes its validation and would silently give NaN images; every float a user controls goes
through ``finite_number`` first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


def finite_number(value: object, name: str, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a float. ValueError naming ``name`` for a non-number (bools included), NaN, +-inf, or a value
    outside [low, high] (bounds given as None are not checked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v} (NaN/Infinity in the workflow?)")
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be between {low} and {high}, got {v}")
    return v


def non_finite_count(t: torch.Tensor) -> int:
    """How many entries of ``t`` are NaN or +-inf (0 for integer and bool tensors). 8-bit floats are upcast
    (``isfinite`` is not implemented for them on every device)."""
    if not t.is_floating_point():
        return 0
    if t.element_size() == 1:
        t = t.float()
    if bool(torch.isfinite(t).all()):
        return 0
    return int((~torch.isfinite(t)).sum())


def check_finite_tensors(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """ValueError naming ``source``, the first bad key and its count unless every tensor is finite."""
    for key, t in tensors.items():
        bad = non_finite_count(t)
        if bad:
            raise ValueError(f"{source}: {key} {tuple(t.shape)} contains {bad} NaN/infinite value(s) (a corrupted "
                             "or badly exported file); download or export it again")
