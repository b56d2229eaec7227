"""DreamO LoRA files -> ComfyUI weight patches, through core's own converters and key map only."""

from __future__ import annotations

import logging
from typing import Any

import comfy.lora
import comfy.lora_convert
import torch

from ...dreamo_core.weights.formats import STANDARD_LORA_SUFFIX, DreamOWeights, LoraFormat
from ...dreamo_core.weights.lora_shapes import lora_shape_mismatches, sliced_shape

log = logging.getLogger("DreamO")


def to_core_layout(weights: DreamOWeights) -> dict[str, torch.Tensor]:
    """The LoRA part in a layout ``comfy.lora.load_lora`` reads: XLabs keys via core ``convert_uso_lora``
    (qkv_lora1 -> img_attn.qkv, qkv_lora -> linear1_qkv, ...), other formats via core ``convert_lora``."""
    if weights.lora_format is LoraFormat.XLABS:
        return comfy.lora_convert.convert_uso_lora(weights.lora)
    return comfy.lora_convert.convert_lora(dict(weights.lora))


def logical_shape(weight: Any) -> tuple[int, ...] | None:
    """The shape a weight has for LoRA maths: GGUF tensors (ComfyUI-GGUF) carry it as ``tensor_shape`` (their data
    is packed); float and fp8 weights and ComfyUI's own quantized tensors report it as ``shape``. None when it
    cannot be known (an integer tensor without ``tensor_shape``: packed quantized data of unknown layout)."""
    shape = getattr(weight, "tensor_shape", None)
    if shape is not None:
        return tuple(int(s) for s in shape)
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        return None
    return tuple(int(s) for s in weight.shape)


def target_shapes(state_dict: dict[str, Any], targets: dict[str, Any]) -> dict[str, tuple[int, ...] | None]:
    """{LoRA module: logical shape of the weight (or slice) it patches, None if unknown}. ``targets`` maps each
    module to core's key-map value: a state-dict key, or (key, (dim, start, length)[, function]) for a slice."""
    out = {}
    for module, target in targets.items():
        key, offset = (target, None) if isinstance(target, str) else (target[0], target[1])
        shape = logical_shape(state_dict.get(key))
        out[module] = None if shape is None else sliced_shape(shape, offset)
    return out


def lora_patches(model: Any, weights: DreamOWeights, where: str) -> dict[Any, Any]:
    """Weight patches for ``model``; ValueError listing any LoRA module core did not map, or whose shape does not
    fit the model's weight (core would only log those at patch time and skip them)."""
    sd = to_core_layout(weights)
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    prefixes = {STANDARD_LORA_SUFFIX.sub("", k) for k in sd}
    unmapped = sorted(p for p in prefixes if p not in key_map)
    if unmapped:
        raise ValueError(
            f"{where}: {len(unmapped)} LoRA module(s) of {weights.source} do not exist in this model, e.g. "
            f"{unmapped[:3]}; is it a LoRA for a different FLUX model?"
        )
    targets = {p: key_map[p] for p in prefixes}
    shapes = target_shapes(model.model.state_dict(), targets)
    wrong = lora_shape_mismatches(sd, shapes)
    if wrong:
        module, delta, target = sorted(wrong)[0]
        raise ValueError(
            f"{where}: {len(wrong)} of {len(prefixes)} LoRA module(s) of {weights.source} do not fit this model, "
            f"e.g. {module}: the LoRA gives {delta}, the model's weight is {target}; is it a LoRA for a different "
            "FLUX model (another width or a FLUX.2/Fill LoRA)?"
        )
    patches = comfy.lora.load_lora(sd, targets, log_missing=False)
    if len(patches) != len(prefixes):
        raise ValueError(f"{where}: only {len(patches)} of {len(prefixes)} LoRA modules of {weights.source} loaded")
    unknown = sum(s is None for s in shapes.values())
    if unknown:
        log.info("DreamO: %s: %d LoRA module(s) target quantized weights of unknown shape (not shape-checked)",
                 weights.source, unknown)
    return patches


def add_lora(model: Any, weights: DreamOWeights, strength: float, where: str) -> None:
    """Add the LoRA of ``weights`` to ``model`` (a clone the caller owns) at ``strength``."""
    patches = lora_patches(model, weights, where)
    added = model.add_patches(patches, strength)
    if len(added) != len(patches):
        missing = sorted(str(k) for k in set(patches) - set(added))
        raise ValueError(f"{where}: {len(missing)} LoRA target(s) of {weights.source} not found in the model: {missing[:3]}")
    log.info("DreamO: %s: %d of %d LoRA modules applied at strength %g", weights.source, len(added), len(patches),
             strength)
