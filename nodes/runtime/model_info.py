"""What the node layer needs to know about a ComfyUI model: is it Flux, and its DreamO-relevant sizes."""

from __future__ import annotations

from typing import Any

import comfy.ldm.flux.model
import comfy.model_base

from ...dreamo_core.conditioning.embeddings import ConditionEmbeddings
from ...dreamo_core.spec import DreamOSpec

EMBEDDINGS_ATTACHMENT = "dreamo_embeddings"
T5_ROWS_ATTACHMENT = "dreamo_t5_rows"
WRAPPER_KEY = "dreamo"


LOW_VRAM_ROUTES = ("a GGUF FLUX.1-dev (ComfyUI-GGUF's Unet Loader), fp8 (Load Diffusion Model, weight_dtype fp8) or "
                   "ComfyUI's own int8/int4 quantized FLUX.1-dev")


def replaced_diffusion_model(base: Any, dm: Any) -> str | None:
    """Why DreamO's hooks cannot run on ``dm`` (None when they can): a diffusion model without ComfyUI's Flux
    ``_forward`` seam (e.g. ComfyUI-nunchaku's SVDQuant int4 wrapper, which replaces the whole FLUX forward)
    never runs DIFFUSION_MODEL wrappers or post_input patches, so DreamO would be silently absent. Decided by what
    the object lacks, not by its name."""
    if not isinstance(base, comfy.model_base.Flux) or dm is None or callable(getattr(dm, "_forward", None)):
        return None
    return (f"a {type(base).__name__} model whose diffusion model {type(dm).__module__}.{type(dm).__qualname__} is "
            "not ComfyUI's Flux (it has no _forward, e.g. a Nunchaku SVDQuant int4 FLUX from ComfyUI-nunchaku): "
            "DreamO's wrapper and post_input patch would never run on it. For low VRAM use " + LOW_VRAM_ROUTES)


def flux1_mismatch(base: Any, dm: Any) -> str | None:
    """Why a ComfyUI model is not FLUX.1-dev-shaped (None when it is). FLUX.2, Chroma, LongCat, Ovis, Fill and
    schnell share (or subclass) core's Flux classes since 0.3.72, so the exact class and the params decide; a
    replaced diffusion model (Nunchaku) is named by ``replaced_diffusion_model``."""
    replaced = replaced_diffusion_model(base, dm)
    if replaced is not None:
        return replaced
    if type(base) is not comfy.model_base.Flux or type(dm) is not comfy.ldm.flux.model.Flux:
        names = {"Flux2": "FLUX.2", "Chroma": "Chroma", "ChromaRadiance": "Chroma Radiance", "LongCatImage": "LongCat-Image"}
        kind = type(base).__name__ if base is not None else "non-diffusion"
        if type(base) is comfy.model_base.Flux:  # the base is Flux, its diffusion model another class
            return f"a Flux model whose diffusion model is {type(dm).__qualname__}, not ComfyUI's own Flux"
        return f"a {names.get(kind, kind)} model"
    p = dm.params
    checks = [
        (len(p.axes_dim) == 3 and p.patch_size == 2, f"{len(p.axes_dim)} RoPE axes / patch {p.patch_size} (FLUX.1: 3 / 2)"),
        (p.in_channels == 16 and p.out_channels == 16,
         f"{p.in_channels} input latent channels (FLUX.1-dev: 16; Fill/inpaint models are not supported)"),
        (p.vec_in_dim is not None, "no pooled-text input (vector_in): not a FLUX.1 text path"),
        (p.guidance_embed, "no guidance embedding (FLUX.1-schnell-like); DreamO is trained on FLUX.1-dev"),
        (not getattr(p, "global_modulation", False), "global modulation (a FLUX.2-style model)"),
        (not getattr(p, "yak_mlp", False) and not getattr(p, "txt_norm", False), "a gated MLP / text norm (Ovis-style)"),
        (not getattr(p, "txt_ids_dims", None), f"text position ids on axes {getattr(p, 'txt_ids_dims', None)}"),
    ]
    return next((why for ok, why in checks if not ok), None)


def flux_params(model: Any, where: str) -> Any:
    """The FluxParams of a ModelPatcher holding a FLUX.1-dev-shaped model; ValueError naming ``where`` otherwise."""
    base = getattr(model, "model", None)
    dm = getattr(base, "diffusion_model", None)
    why = flux1_mismatch(base, dm)
    if why is not None:
        raise ValueError(f"{where}: DreamO needs a FLUX.1-dev model (flux1-dev in any precision: bf16, fp8, GGUF), "
                         f"got {why}")
    return dm.params


def spec_for_model(model: Any, where: str) -> DreamOSpec:
    """DreamOSpec with the model's width, MLP ratio, block counts and text width (the T5 placeholder rows are as
    wide as the model's text input; FLUX.1-dev: 3072, 4.0, 19, 38, 4096)."""
    p = flux_params(model, where)
    return DreamOSpec(hidden_size=p.hidden_size, mlp_ratio=p.mlp_ratio, num_double_blocks=p.depth,
                      num_single_blocks=p.depth_single_blocks, t5_dim=p.context_in_dim)


def attached_embeddings(model: Any) -> ConditionEmbeddings | None:
    """The DreamO tables Load DreamO LoRA attached to this ModelPatcher, or None."""
    return model.get_attachment(EMBEDDINGS_ATTACHMENT)
