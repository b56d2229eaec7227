"""FLUX.1-dev flow-matching schedule as the official DreamO pipeline uses it."""

from __future__ import annotations

import math

import numpy as np

from ..spec import FLUX_DEV

FLUX_SCHEDULER_CONFIG = dict(
    base_image_seq_len=FLUX_DEV.base_seq_len, max_image_seq_len=FLUX_DEV.max_seq_len, base_shift=FLUX_DEV.base_shift,
    max_shift=FLUX_DEV.max_shift, shift=3.0, use_dynamic_shifting=True, time_shift_type="exponential",
    num_train_timesteps=1000,
)


def flux_mu(target_tokens: int) -> float:
    """Dynamic time-shift mu, linear in the number of NOISY tokens only (references do not count):
    ``FLUX_DEV.time_shift_mu``."""
    return FLUX_DEV.time_shift_mu(target_tokens)


def percent_to_sigma(percent: float, mu: float) -> float:
    """The sigma at ``percent`` (0 = first step, 1 = the end) of the schedule shifted by ``mu``: the scheduler's
    exponential time shift of t = 1 - percent (as ComfyUI's percent_to_sigma for FLUX, with the generator's mu)."""
    if percent <= 0.0:
        return 1.0
    if percent >= 1.0:
        return 0.0
    t = 1.0 - percent
    return math.exp(mu) / (math.exp(mu) + (1.0 / t - 1.0))


def dreamo_sigmas(steps: int) -> np.ndarray:
    """The unshifted sigmas the official pipeline passes: linspace(1, 1/steps, steps)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return np.linspace(1.0, 1.0 / steps, steps)


def make_scheduler(config: dict | None = None):
    """A diffusers FlowMatchEulerDiscreteScheduler with FLUX.1-dev's configuration (or ``config``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**(config or FLUX_SCHEDULER_CONFIG))
