"""One guided model call through ComfyUI's real sampling stack (``CFGGuider`` -> ``KSAMPLER``), so that the DreamO
wrappers, the per-run checks and core's reference handling all run as in a KSampler step: what the node tests
compare and the benches time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
Denoise = Callable[[torch.Tensor], torch.Tensor]


def guided_call(model, positive: list, negative: list, noise: torch.Tensor, sigma: float, cfg: float,
                run: Callable[[Denoise, torch.Tensor], T]) -> T:
    """Sample ``model`` for one step at ``sigma`` through ``comfy.samplers.CFGGuider`` (conds ``positive`` /
    ``negative``, ``cfg``; ``guider_call``). Returns what ``run`` returned."""
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider_call(guider, noise, sigma, run)


def guider_call(guider, noise: torch.Tensor, sigma: float, run: Callable[[Denoise, torch.Tensor], T]) -> T:
    """Sample with ``guider`` (any ComfyUI guider, its conds and cfg set) for one step at ``sigma``: sigmas
    [sigma, 0], a zero latent, seed 0, no progress bar. Inside, the sampler calls ``run(denoise, x)``: x (B, C, H, W)
    is the noised input ComfyUI made from ``noise``, and ``denoise(x_in)`` one guided model evaluation of x_in at
    sigma (the run's conds, wrappers and model options in place) -> denoised (B, C, H, W)."""
    import comfy.samplers

    result = []

    def sampler_fn(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        def denoise(x_in: torch.Tensor) -> torch.Tensor:
            return model_k(x_in, sigmas[0] * x_in.new_ones(x_in.shape[0]), **(extra_args or {}))

        result.append(run(denoise, x))
        return x

    guider.sample(noise, torch.zeros_like(noise), comfy.samplers.KSAMPLER(sampler_fn), torch.tensor([sigma, 0.0]),
                  disable_pbar=True, seed=0)
    return result[0]


@dataclass
class Captured:
    """What one guided model call saw: x (the noised input) and the denoised output."""

    x: torch.Tensor
    denoised: torch.Tensor


def denoise_once(model, positive: list, negative: list, noise: torch.Tensor, sigma: float, cfg: float) -> Captured:
    """One guided model evaluation at ``sigma`` (``guided_call``): its input and output."""
    return guided_call(model, positive, negative, noise, sigma, cfg, lambda denoise, x: Captured(x.clone(), denoise(x)))


def guider_denoise_once(guider, noise: torch.Tensor, sigma: float) -> Captured:
    """One evaluation of ``guider`` (e.g. DualCFG's, Basic's) at ``sigma`` (``guider_call``): its input and output."""
    return guider_call(guider, noise, sigma, lambda denoise, x: Captured(x.clone(), denoise(x)))


@contextlib.contextmanager
def seen_position_ids(model_patcher):
    """Every (B, L_txt + L_img, ids) tensor the FLUX model turns into RoPE while the block runs: a forward
    pre-hook on this model's ``pe_embedder``, removed afterwards (DreamO refuses other post_input patches, so
    a test cannot observe the ids with one)."""
    seen: list[torch.Tensor] = []
    module = model_patcher.model.diffusion_model.pe_embedder
    handle = module.register_forward_pre_hook(lambda _mod, args: seen.append(args[0].detach().clone()))
    try:
        yield seen
    finally:
        handle.remove()
