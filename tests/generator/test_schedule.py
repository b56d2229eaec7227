"""The sampling schedule against the closed-form FLUX time shift (independent of diffusers)."""

import math

import numpy as np
import pytest

from dreamo_core.generator.schedule import dreamo_sigmas, flux_mu, make_scheduler


def shifted(sigma: float, mu: float) -> float:
    # exponential time shift: exp(mu) / (exp(mu) + (1/sigma - 1))
    return math.exp(mu) / (math.exp(mu) + (1 / sigma - 1))


def test_mu_matches_the_spec_values():
    assert flux_mu(256) == pytest.approx(0.5)
    assert flux_mu(4096) == pytest.approx(1.15)  # 1024x1024
    assert flux_mu(64 * 48) == pytest.approx(0.977, abs=1e-3)  # 1024x768, spec §1


@pytest.mark.parametrize("steps,tokens", [(12, 4096), (4, 256), (25, 3072)])
def test_scheduler_timesteps_are_shifted_linspace(steps, tokens):
    sched = make_scheduler()
    sched.set_timesteps(sigmas=dreamo_sigmas(steps), mu=flux_mu(tokens))
    mu = flux_mu(tokens)
    expected = [shifted(s, mu) * 1000 for s in np.linspace(1.0, 1.0 / steps, steps)]
    assert np.allclose(sched.timesteps.numpy(), expected, rtol=1e-5)
    assert float(sched.sigmas[-1]) == 0.0


def test_steps_must_be_positive():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        dreamo_sigmas(0)
