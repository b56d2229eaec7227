"""DreamO LoRA on diffusers module names, and merging LoRAs into a diffusers ``FluxTransformer2DModel``.

ComfyUI does not use this: there, core's own LoRA loader maps the normalised XLabs keys (no second mapper).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .formats import DreamOWeights, LoraFormat
from .lora_targets import block_layout


def xlabs_to_diffusers(xlabs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Normalised XLabs keys -> ``transformer.<module>.lora_A/lora_B.weight``. A fused qkv pair shares its
    down matrix across q/k/v and splits its up matrix into three equal row blocks (q, k, v order);
    a single block's q/k/v are rows 0:3H of BFL's fused ``linear1``, its ``proj_lora`` is ``proj_out`` (in H+MLP)."""
    out: dict[str, torch.Tensor] = {}
    for key, down in xlabs.items():
        if not key.endswith(".down.weight"):
            continue
        kind, block, _, tag = key.split(".")[:4]
        up = xlabs[key.replace(".down.weight", ".up.weight")]
        blocks, tags = block_layout(kind)
        prefix, targets = f"transformer.{blocks}", tags[tag]
        ups = torch.chunk(up, len(targets), dim=0)
        for target, up_part in zip(targets, ups):
            out[f"{prefix}.{block}.{target}.lora_A.weight"] = down
            out[f"{prefix}.{block}.{target}.lora_B.weight"] = up_part
    return out


def diffusers_lora_pairs(weights: DreamOWeights) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """{module name (no ``transformer.`` prefix): (down (r, in), up (out, r), alpha scale)} for the generator."""
    if weights.lora_format is LoraFormat.XLABS:
        sd = xlabs_to_diffusers(weights.lora)
    elif weights.lora_format is LoraFormat.DIFFUSERS:
        sd = {k.replace(".default.weight", ".weight"): v for k, v in weights.lora.items()}
    elif weights.lora_format is LoraFormat.NONE:
        return {}
    else:
        raise ValueError(
            f"{weights.source}: ComfyUI-format LoRA files load in ComfyUI; the standalone generator takes the "
            "original DreamO files (dreamo.safetensors, dreamo_cfg_distill.safetensors, ...) or diffusers LoRAs"
        )
    pairs = {}
    for k, down in sd.items():
        if not k.endswith(".lora_A.weight"):
            continue
        name = k[len("transformer.") : -len(".lora_A.weight")]
        up = sd[k.replace(".lora_A.weight", ".lora_B.weight")]
        alpha = sd.get(k.replace(".lora_A.weight", ".alpha"))
        scale = float(alpha) / down.shape[0] if alpha is not None else 1.0
        pairs[name] = (down, up, scale)
    return pairs


@torch.no_grad()
def merge_lora(model: nn.Module, weights: DreamOWeights, strength: float = 1.0) -> int:
    """W += strength * scale * up @ down for every LoRA pair (computed in float32). Returns modules merged.
    Raises if a target module is missing or its weight shape does not match."""
    pairs = diffusers_lora_pairs(weights)
    modules = dict(model.named_modules())
    for name, (down, up, scale) in pairs.items():
        mod = modules.get(name)
        mod = getattr(mod, "base_layer", mod)  # a LoRA-wrapped layer (peft, the trainer's): merge into its base
        if not isinstance(mod, nn.Linear):
            raise ValueError(f"{weights.source}: LoRA target {name!r} is not a Linear layer of this transformer")
        delta = (up.float() @ down.float()) * (scale * strength)
        if delta.shape != mod.weight.shape:
            raise ValueError(f"{weights.source}: LoRA for {name} gives {tuple(delta.shape)}, the layer is {tuple(mod.weight.shape)}")
        mod.weight.copy_((mod.weight.float() + delta.to(mod.weight.device)).to(mod.weight.dtype))
    return len(pairs)
