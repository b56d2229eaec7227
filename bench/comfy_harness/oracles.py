"""Independent computations the node tests compare wirings against: the hand-written DreamO forward of one prompt
(``hand_forward``) as a denoised latent, regions of it, and ComfyUI's other guiders (Basic, DualCFG) for one step."""

from __future__ import annotations

import torch

from .guided_call import Captured, guider_denoise_once
from .hand_forward import hand_velocity
from .tiny_inputs import SIGMA, tiny_tables

FLUX_DEFAULT_GUIDANCE = 3.5  # what ComfyUI's Flux.extra_conds uses when a prompt has no FluxGuidance


def hand_denoised(model, x: torch.Tensor, prompt: list, refs=None, tables_seed: int = 1,
                  with_embedding: bool = True) -> torch.Tensor:
    """Denoised (B, 16, H, W) at ``SIGMA`` of the hand forward on ``model``'s diffusion model (its own weights, no
    LoRA): the ``prompt``'s text (its FLUX guidance, default 3.5 as ComfyUI's), ``refs`` (a DREAMO_REFS value: raw latents and
    DreamO indices; None: no references) with the DreamO embedding of ``tiny_tables(tables_seed)``
    (``with_embedding`` False: plain FLUX, the target gets no embedding either)."""
    t = tiny_tables(tables_seed)
    values = prompt[0][1]
    latents = [r.latent for r in refs.refs] if refs is not None else []
    indices = refs.indices if refs is not None else []
    v = hand_velocity(model.model.diffusion_model, x, SIGMA, prompt[0][0], values["pooled_output"],
                      values.get("guidance", FLUX_DEFAULT_GUIDANCE), latents, indices, t["dreamo_task_embedding.weight"],
                      t["dreamo_idx_embedding.weight"], with_embedding and refs is not None)
    return x - SIGMA * v


def basic_guider(model, positive: list, noise: torch.Tensor) -> Captured:
    """One step of core's BasicGuider (the positive alone) at ``SIGMA``."""
    import comfy_extras.nodes_custom_sampler as custom

    guider = custom.Guider_Basic(model)
    guider.set_conds(positive)
    return guider_denoise_once(guider, noise, SIGMA)


def dual_cfg_guider(model, cond1: list, cond2: list, negative: list, cfg1: float, cfg2: float,
                    noise: torch.Tensor) -> Captured:
    """One step of core's DualCFGGuider (regular style; it numbers its conds negative 0, cond2 1, cond1 2)."""
    import comfy_extras.nodes_custom_sampler as custom

    guider = custom.Guider_DualCFG(model)
    guider.set_conds(cond1, cond2, negative)
    guider.set_cfg(cfg1, cfg2)
    return guider_denoise_once(guider, noise, SIGMA)


def dual_cfg_formula(positive: torch.Tensor, middle: torch.Tensor, negative: torch.Tensor, cfg1: float,
                     cfg2: float) -> torch.Tensor:
    """DualCFG's regular combination of three denoised predictions, written out: the middle against the negative
    with cfg2, plus the positive against the middle with cfg1."""
    return negative + cfg2 * (middle - negative) + cfg1 * (positive - middle)


def left_right(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W): the left half of the width from ``left``, the rest from ``right``."""
    half = left.shape[-1] // 2
    return torch.cat([left[..., :half], right[..., half:]], dim=-1)
