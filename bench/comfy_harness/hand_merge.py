"""The node tests' independent LoRA merge (imported by name, like ``hand_forward``): BFL-layout FLUX weights + a
DreamO XLabs LoRA + a diffusers / peft FLUX LoRA (what the subject tune and the preference stage export), every
delta ``up @ down`` written out here with the q / k / v rows of the fused qkv / ``linear1`` placed by hand, not by
ComfyUI's key map; ``stacked_on_dreamo``, the graph it is compared with (Load DreamO LoRA, then core
LoraLoaderModelOnly); and ``patched_weights``, what ComfyUI's patcher makes of a model's LoRA patches."""

from __future__ import annotations

import torch

from .loading import run_node
from .tiny_models import HIDDEN

# peft module of the tiny model's block 0 -> (BFL weight, which third of a fused qkv / linear1; None = the whole)
DIFFUSERS_TARGETS = {"transformer_blocks.0.attn.to_q": ("double_blocks.0.img_attn.qkv", 0),
                     "transformer_blocks.0.attn.to_k": ("double_blocks.0.img_attn.qkv", 1),
                     "transformer_blocks.0.attn.to_v": ("double_blocks.0.img_attn.qkv", 2),
                     "transformer_blocks.0.attn.add_q_proj": ("double_blocks.0.txt_attn.qkv", 0),
                     "transformer_blocks.0.attn.add_k_proj": ("double_blocks.0.txt_attn.qkv", 1),
                     "transformer_blocks.0.attn.add_v_proj": ("double_blocks.0.txt_attn.qkv", 2),
                     "transformer_blocks.0.attn.to_out.0": ("double_blocks.0.img_attn.proj", None),
                     "transformer_blocks.0.attn.to_add_out": ("double_blocks.0.txt_attn.proj", None),
                     "single_transformer_blocks.0.attn.to_q": ("single_blocks.0.linear1", 0),
                     "single_transformer_blocks.0.attn.to_k": ("single_blocks.0.linear1", 1),
                     "single_transformer_blocks.0.attn.to_v": ("single_blocks.0.linear1", 2),
                     "single_transformer_blocks.0.proj_out": ("single_blocks.0.linear2", None)}


def hand_merged_weights(sd: dict[str, torch.Tensor], dreamo: dict[str, torch.Tensor], lora: dict[str, torch.Tensor],
                        lora_strength: float) -> dict[str, torch.Tensor]:
    """``sd`` (a copy) + the DreamO XLabs LoRA ``dreamo`` at 1 + the diffusers LoRA ``lora`` at ``lora_strength``."""
    sd = {k: v.clone() for k, v in sd.items()}
    hid = HIDDEN

    def add(key, delta, rows=None):
        w = sd[f"{key}.weight"]
        if rows is None:
            w += delta
        else:
            w[rows[0]:rows[1]] += delta

    x = {k.split("processor.")[1]: v for k, v in dreamo.items() if "processor." in k and k.startswith("double")}
    s = {k.split("processor.")[1]: v for k, v in dreamo.items() if "processor." in k and k.startswith("single")}
    for tag, key in (("qkv_lora1", "img_attn.qkv"), ("proj_lora1", "img_attn.proj"), ("qkv_lora2", "txt_attn.qkv"),
                     ("proj_lora2", "txt_attn.proj")):
        add(f"double_blocks.0.{key}", x[f"{tag}.up.weight"] @ x[f"{tag}.down.weight"])
    add("single_blocks.0.linear1", s["qkv_lora.up.weight"] @ s["qkv_lora.down.weight"], (0, 3 * hid))
    add("single_blocks.0.linear2", s["proj_lora.up.weight"] @ s["proj_lora.down.weight"])
    assert len(lora) == 2 * len(DIFFUSERS_TARGETS)  # every target of the file is merged here
    for module, (key, part) in DIFFUSERS_TARGETS.items():
        delta = lora_strength * lora[f"transformer.{module}.lora_B.weight"] @ lora[f"transformer.{module}.lora_A.weight"]
        add(key, delta, None if part is None else (part * hid, (part + 1) * hid))
    return sd


def patched_weights(model) -> dict[str, torch.Tensor]:
    """The FLUX weights of a ModelPatcher with its patches applied (then removed again). Every loaded model is
    unloaded first: a sampling run may have left another clone's patches on the shared model."""
    import comfy.model_management

    comfy.model_management.unload_all_models()
    model.patch_model()
    try:
        return {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    finally:
        model.unpatch_model()


def stacked_on_dreamo(base, lora_file: str, strength: float) -> tuple:
    """(Load DreamO LoRA of ``dreamo.safetensors`` on ``base``, the same + core LoraLoaderModelOnly of ``lora_file``
    at ``strength``): two ModelPatchers."""
    import nodes

    (dreamo,) = run_node("DreamO_LoadLoRA", model=base, lora_name="dreamo.safetensors", strength=1.0,
                         embedding_name="None")
    (stacked,) = nodes.NODE_CLASS_MAPPINGS["LoraLoaderModelOnly"]().load_lora_model_only(dreamo, lora_file, strength)
    return dreamo, stacked
