"""Which ComfyUI this pack runs on, decided by the features it uses (never by version strings).

ComfyUI 0.3.64 is the oldest version CI tests (``tools/test_nodes.sh``); older ones lack features DreamO needs
and, without this check, would run DreamO silently without its embedding (0.3.56 has no ``uxo`` reference
method, no ``post_input`` patch list for Flux and no XLabs LoRA converter).
"""

from __future__ import annotations

import inspect
from typing import Any

MIN_COMFYUI = "0.3.64"  # keep equal to pyproject.toml [tool.comfy] requires-comfyui
PATCHER_METHODS = ("set_model_post_input_patch", "add_wrapper_with_key", "get_wrappers", "remove_wrappers_with_key",
                   "set_attachments", "get_attachment")
FORWARD_PARAMETERS = ("x", "context", "ref_latents", "transformer_options")


def missing_features(model_patcher: Any, lora_convert: Any, flux_model: Any) -> list[str]:
    """What of DreamO's needs the given ComfyUI classes/modules lack (empty when all is there):
    model_patcher = ``comfy.model_patcher.ModelPatcher``, lora_convert = ``comfy.lora_convert``,
    flux_model = ``comfy.ldm.flux.model.Flux``."""
    missing = [f"ModelPatcher.{m}" for m in PATCHER_METHODS if not hasattr(model_patcher, m)]
    if not hasattr(lora_convert, "convert_uso_lora"):
        missing.append("comfy.lora_convert.convert_uso_lora (XLabs LoRA keys)")
    forward = getattr(flux_model, "_forward", None)
    if forward is None:
        missing.append("Flux._forward (the DIFFUSION_MODEL wrapper seam)")
        return missing
    params = inspect.signature(forward).parameters
    missing += [f"Flux._forward({p}=...)" for p in FORWARD_PARAMETERS if p not in params]
    try:
        source = inspect.getsource(forward)
    except (OSError, TypeError):
        source = '"uxo"'  # no source to read (frozen install): the run-time checks still guard the method
    if '"uxo"' not in source and "'uxo'" not in source:
        missing.append('the "uxo" reference method of Flux._forward')
    return missing


def require_supported_comfyui() -> None:
    """ImportError naming the version needed and what is missing, so ComfyUI refuses the pack at load with that
    message instead of producing silently wrong images."""
    import comfy.ldm.flux.model
    import comfy.lora_convert
    import comfy.model_patcher

    missing = missing_features(comfy.model_patcher.ModelPatcher, comfy.lora_convert, comfy.ldm.flux.model.Flux)
    if missing:
        raise ImportError(f"DreamO needs ComfyUI {MIN_COMFYUI} or newer; this ComfyUI lacks: {', '.join(missing)}. "
                          "Update ComfyUI (e.g. with ComfyUI-Manager's 'Update ComfyUI').")
