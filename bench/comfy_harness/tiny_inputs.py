"""Inputs for the tiny FLUX of ``tiny_models``: DreamO files (embedding tables, LoRAs in the official, ComfyUI and
diffusers layouts) in a ComfyUI ``loras`` folder, text conditioning, DREAMO_REFS values, and the sampling point
the node tests share (SIGMA, GUIDANCE, REF_SHAPES)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .loading import pack, use_loras_folder
from .tiny_models import CTX, HIDDEN, VEC

SIGMA, GUIDANCE = 0.7, 4.0  # the one guided call of the node tests: its sigma and FLUX guidance
REF_SHAPES = [(8, 6), (4, 4), (6, 4)]  # raw reference latents (h, w) -> token grids 4x3, 2x2, 3x2


def tiny_tables(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"dreamo_task_embedding.weight": torch.randn(2, HIDDEN, generator=g),
            "dreamo_idx_embedding.weight": torch.randn(10, HIDDEN, generator=g)}


def xlabs_lora(rank: int = 4, seed: int = 2, prefix: str = "") -> dict[str, torch.Tensor]:
    """A tiny LoRA in the original dreamo.safetensors key layout (``double_blocks_0.processor.qkv_lora1...``)."""
    g = torch.Generator().manual_seed(seed)
    h, mlp = HIDDEN, int(HIDDEN * 4.0)
    shapes = {"qkv_lora1": (h, 3 * h), "proj_lora1": (h, h), "qkv_lora2": (h, 3 * h), "proj_lora2": (h, h)}
    sd = {}
    for tag, (n_in, n_out) in shapes.items():
        sd[f"{prefix}double_blocks_0.processor.{tag}.down.weight"] = torch.randn(rank, n_in, generator=g) * 0.1
        sd[f"{prefix}double_blocks_0.processor.{tag}.up.weight"] = torch.randn(n_out, rank, generator=g) * 0.1
    for tag, (n_in, n_out) in {"qkv_lora": (h, 3 * h), "proj_lora": (h + mlp, h)}.items():
        sd[f"{prefix}single_blocks_0.processor.{tag}.down.weight"] = torch.randn(rank, n_in, generator=g) * 0.1
        sd[f"{prefix}single_blocks_0.processor.{tag}.up.weight"] = torch.randn(n_out, rank, generator=g) * 0.1
    return sd


def comfy_lora(rank: int = 4, seed: int = 3) -> dict[str, torch.Tensor]:
    """A tiny LoRA in ComfyUI format (``diffusion_model.<module>.lora_up/lora_down.weight``)."""
    g = torch.Generator().manual_seed(seed)
    h = HIDDEN
    targets = {"double_blocks.0.img_attn.proj": (h, h), "single_blocks.0.linear1": (h, 3 * h + 4 * h)}
    sd = {}
    for name, (n_in, n_out) in targets.items():
        sd[f"diffusion_model.{name}.lora_down.weight"] = torch.randn(rank, n_in, generator=g) * 0.1
        sd[f"diffusion_model.{name}.lora_up.weight"] = torch.randn(n_out, rank, generator=g) * 0.1
    return sd


def diffusers_lora(rank: int = 4, seed: int = 11) -> dict[str, torch.Tensor]:
    """A tiny FLUX LoRA in diffusers / peft keys (``transformer.<module>.lora_A/lora_B.weight``), the subject
    LoRA's layout (training/subject_lora.py): one double-block and one single-block target."""
    g = torch.Generator().manual_seed(seed)
    h = HIDDEN
    targets = {"transformer_blocks.0.attn.to_k": (h, h), "single_transformer_blocks.0.proj_out": (h + 4 * h, h)}
    sd = {}
    for name, (n_in, n_out) in targets.items():
        sd[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, n_in, generator=g) * 0.1
        sd[f"transformer.{name}.lora_B.weight"] = torch.randn(n_out, rank, generator=g) * 0.1
    return sd


def write_loras(folder: Path) -> None:
    """Synthetic files with the official names, in a folder registered as ComfyUI ``loras``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    t5 = torch.randn(12, CTX, generator=torch.Generator().manual_seed(9))  # as wide as the model's text input
    files = {
        "dreamo.safetensors": {**xlabs_lora(), **tiny_tables(), "dreamo_t5_embedding.weight": t5},
        "dreamo_comfyui.safetensors": comfy_lora(),
        "embedding.safetensors": tiny_tables(),
        "dreamo_cfg_distill_comfyui.safetensors": comfy_lora(seed=4),
        "dreamo_quality_lora_pos_comfyui.safetensors": comfy_lora(seed=5),
        "dreamo_quality_lora_neg_comfyui.safetensors": comfy_lora(seed=6),
        "flux-turbo.safetensors": comfy_lora(seed=7),
        "dreamo_sft_lora.safetensors": comfy_lora(seed=8),
        "dreamo_dpo_lora.safetensors": comfy_lora(seed=10),
        "dreamo_subject_lora.safetensors": diffusers_lora(),
        "not_dreamo.safetensors": {"model.diffusion_model.img_in.weight": torch.zeros(4, 4)},
        "tables_wrong_width.safetensors": {"dreamo_task_embedding.weight": torch.zeros(2, 64),
                                           "dreamo_idx_embedding.weight": torch.zeros(10, 64)},
    }
    for name, sd in files.items():
        save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / name))
    use_loras_folder(folder)


def conditioning(seed: int, tokens: int = 5, batch: int = 1) -> list:
    """Fake text-encoder output: [[context (B, T, 48), {"pooled_output": (B, 32)}]]."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(batch, tokens, CTX, generator=g), {"pooled_output": torch.randn(batch, VEC, generator=g)}]]


def guided_positive(seed: int = 20) -> list:
    """``conditioning(seed)`` with FluxGuidance's ``GUIDANCE``: the node tests' positive prompt."""
    c = conditioning(seed)
    c[0][1]["guidance"] = GUIDANCE
    return c


def dreamo_refs(latents: Sequence[torch.Tensor], indices: Sequence[int] | None = None, task: str = "ip"):
    """A DREAMO_REFS value (the pack's ``DreamORefs``) of raw VAE latents (1, 16, h, w), with DreamO indices
    ``indices`` (default 1, 2, ...), as Encode Reference would give for them."""
    R = pack("nodes.runtime.references")
    indices = range(1, len(latents) + 1) if indices is None else indices
    return R.DreamORefs(tuple(R.EncodedReference(z, task, k) for z, k in zip(latents, indices)))


def random_refs(shapes: Sequence[tuple[int, int]], indices: Sequence[int], seed: int = 11):
    """``dreamo_refs`` of seeded N(0, 1) latents of the raw ``shapes`` (h, w)."""
    g = torch.Generator().manual_seed(seed)
    return dreamo_refs([torch.randn(1, 16, *s, generator=g) for s in shapes], indices)
