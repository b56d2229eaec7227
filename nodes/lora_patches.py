"""DreamO LoRA files -> ComfyUI weight patches, through core's own converters and key map only."""

from __future__ import annotations

import logging
from typing import Any

import comfy.lora
import comfy.lora_convert
import torch

from ..dreamo_core.weights.formats import STANDARD_LORA_SUFFIX, DreamOWeights, LoraFormat

log = logging.getLogger("DreamO")


def to_core_layout(weights: DreamOWeights) -> dict[str, torch.Tensor]:
    """The LoRA part in a layout ``comfy.lora.load_lora`` reads: XLabs keys via core ``convert_uso_lora``
    (qkv_lora1 -> img_attn.qkv, qkv_lora -> linear1_qkv, ...), other formats via core ``convert_lora``."""
    if weights.lora_format is LoraFormat.XLABS:
        return comfy.lora_convert.convert_uso_lora(weights.lora)
    return comfy.lora_convert.convert_lora(dict(weights.lora))


def lora_patches(model: Any, weights: DreamOWeights, where: str) -> dict[Any, Any]:
    """Weight patches for ``model``; raises ValueError listing any LoRA key core did not map."""
    sd = to_core_layout(weights)
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    prefixes = {STANDARD_LORA_SUFFIX.sub("", k) for k in sd}
    unmapped = sorted(p for p in prefixes if p not in key_map)
    if unmapped:
        raise ValueError(
            f"{where}: {len(unmapped)} LoRA module(s) of {weights.source} do not exist in this model, e.g. "
            f"{unmapped[:3]}; is it a LoRA for a different FLUX model?"
        )
    patches = comfy.lora.load_lora(sd, {p: key_map[p] for p in prefixes}, log_missing=False)
    if len(patches) != len(prefixes):
        raise ValueError(f"{where}: only {len(patches)} of {len(prefixes)} LoRA modules of {weights.source} loaded")
    return patches


def add_lora(model: Any, weights: DreamOWeights, strength: float, where: str) -> None:
    """Add the LoRA of ``weights`` to ``model`` (a clone the caller owns) at ``strength``."""
    patches = lora_patches(model, weights, where)
    added = model.add_patches(patches, strength)
    if len(added) != len(patches):
        missing = sorted(str(k) for k in set(patches) - set(added))
        raise ValueError(f"{where}: {len(missing)} LoRA target(s) of {weights.source} not found in the model: {missing[:3]}")
    log.info("DreamO: %s: %d LoRA modules at strength %g", weights.source, len(added), strength)
