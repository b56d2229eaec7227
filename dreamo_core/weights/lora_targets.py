"""The DreamO LoRA target layout, written once: which XLabs pair (the official file's keys) adapts which
diffusers modules of a FLUX block. ComfyUI maps the same XLabs keys with core's own ``convert_uso_lora``.

A fused qkv pair (one ``down`` shared by q, k, v; ``up`` stacked in q, k, v order) adapts three diffusers
linears; a single block's ``proj_lora`` is ``proj_out`` (input hidden + MLP width).
"""

from __future__ import annotations

from ..spec import DreamOSpec

DOUBLE_BLOCKS = "transformer_blocks"  # diffusers names of FLUX's double / single stream blocks
SINGLE_BLOCKS = "single_transformer_blocks"
XLABS_DOUBLE: dict[str, tuple[str, ...]] = {  # XLabs tag -> modules of transformer_blocks.{i}
    "qkv_lora1": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "proj_lora1": ("attn.to_out.0",),
    "qkv_lora2": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "proj_lora2": ("attn.to_add_out",),
}
XLABS_SINGLE: dict[str, tuple[str, ...]] = {  # XLabs tag -> modules of single_transformer_blocks.{i}
    "qkv_lora": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "proj_lora": ("proj_out",),
}
DOUBLE_TAGS = tuple(XLABS_DOUBLE)
SINGLE_TAGS = tuple(XLABS_SINGLE)


def block_layout(kind: str) -> tuple[str, dict[str, tuple[str, ...]]]:
    """``"double_blocks"``/``"double"`` or ``"single_blocks"``/``"single"`` -> (diffusers block list, tag -> modules)."""
    return (DOUBLE_BLOCKS, XLABS_DOUBLE) if kind.startswith("double") else (SINGLE_BLOCKS, XLABS_SINGLE)


def diffusers_target_names(num_double: int, num_single: int) -> list[str]:
    """Full diffusers module names of every DreamO LoRA target (the final ``proj_out`` of the model is not one)."""
    names = []
    for kind, count in (("double", num_double), ("single", num_single)):
        blocks, tags = block_layout(kind)
        names += [f"{blocks}.{i}.{m}" for i in range(count) for modules in tags.values() for m in modules]
    return names


def xlabs_pair_shapes(tag: str, rank: int, spec: DreamOSpec) -> tuple[tuple[int, int], tuple[int, int]]:
    """(down, up) shapes of an XLabs pair for ``tag`` at ``rank`` (FLUX.1-dev: qkv up 9216, single proj down 15360)."""
    h = spec.hidden_size
    down_in = spec.single_proj_in if tag == "proj_lora" else h
    up_out = 3 * h if tag.startswith("qkv") else h
    return (rank, down_in), (up_out, rank)
