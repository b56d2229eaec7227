"""A NEW LoRA trained on top of a merged DreamO base, exported as an ordinary FLUX LoRA (subject tuning, the preference
stage): the base DreamO files merged into the frozen transformer, the DreamO tables loaded and frozen, a fresh peft
LoRA the only trainable part.

File layout (diffusers / peft FLUX LoRA, what ``FluxPipeline.save_lora_weights`` writes):
``transformer.{module}.lora_A.weight`` (r, in) and ``transformer.{module}.lora_B.weight`` (out, r) for every DreamO
LoRA target (``dreamo_core.weights.lora_targets``), peft's scale alpha/r folded into ``lora_B`` (no alpha keys:
ΔW = B @ A). ComfyUI's core LoRA loader maps these keys for FLUX (q/k/v into slices of the fused qkv /
``linear1``), so the file stacks with **Load DreamO LoRA** through ``LoraLoaderModelOnly``; the ``dreamo``
generator fuses it with ``--lora``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from dreamo_core.generator.loading import LoraRequest, apply_dreamo_files
from dreamo_core.spec import DreamOSpec
from dreamo_core.weights.lora_targets import diffusers_target_names

from .config import ModelConfig
from .export import lora_factors
from .model import DreamOTrainModel, build_model

logger = logging.getLogger("DreamO")


def freeze_tables(model: DreamOTrainModel) -> None:
    """The task / idx tables and the T5 placeholder rows stay as the base has them (not in a plain LoRA file)."""
    for p in (model.task_embedding, model.idx_embedding, model.t5_embedding):
        p.requires_grad_(False)


def load_base(model: DreamOTrainModel, bases: Sequence[LoraRequest], option: str = "--base") -> None:
    """Merge every base file's LoRA into the frozen transformer weights (at its strength) and copy the DreamO
    tables / T5 rows of the files into the model (the last file holding them wins). ValueError naming ``option``
    when no file holds the tables (the new LoRA needs the DreamO it will run on: dreamo.safetensors or the
    trainer's export)."""
    spec = DreamOSpec.of_diffusers_config(model.transformer.config, model.text_encoder.t5_dim)
    tables, t5 = apply_dreamo_files(model.transformer, bases, None, spec)
    if tables is None:
        raise ValueError(f"{option}: none of {[str(r.path) for r in bases]} holds the DreamO tables "
                         "(dreamo_task_embedding / dreamo_idx_embedding); give the DreamO file itself first")
    with torch.no_grad():
        model.task_embedding.copy_(tables.task)
        model.idx_embedding.copy_(tables.idx)
        if t5 is not None:
            model.t5_embedding.copy_(t5.to(model.t5_embedding))


def model_on_base(cfg: ModelConfig, bases: Sequence[LoraRequest], option: str = "--base") -> DreamOTrainModel:
    """The trainer's model (base transformer + fresh peft LoRA of ``cfg.lora_rank``, B = 0 so it starts as the
    base) with the base DreamO files merged under the LoRA and the tables frozen: only the new LoRA trains."""
    model = build_model(cfg)
    if bases:
        load_base(model, bases, option)
    else:
        logger.warning("no %s: training a new LoRA on a DreamO with RANDOM tables and no DreamO LoRA (tests / "
                       "mechanics only)", option)
    freeze_tables(model)
    return model


def flux_lora_state_dict(transformer: nn.Module, dtype: torch.dtype = torch.bfloat16,
                         params: dict[str, torch.Tensor] | None = None,
                         prefix: str = "transformer.") -> dict[str, torch.Tensor]:
    """``transformer.{module}.lora_A/lora_B.weight`` of the trained LoRA (scale folded into B), cast to ``dtype``.
    ``params``: full trainable tensors by the parent model's parameter names (``prefix`` + module name), used
    instead of the modules' own (FSDP: gathered from the shards by ``checkpoint.trainable_state``)."""
    mods = dict(transformer.named_modules())
    out = {}
    for name in diffusers_target_names(len(transformer.transformer_blocks), len(transformer.single_transformer_blocks)):
        weights = None if params is None else tuple(params[f"{prefix}{name}.lora_{ab}.default.weight"] for ab in "AB")
        a, b = lora_factors(mods[name], weights=weights)
        out[f"transformer.{name}.lora_A.weight"] = a.to(dtype).contiguous().cpu()
        out[f"transformer.{name}.lora_B.weight"] = b.to(dtype).contiguous().cpu()
    return out


def save_flux_lora(transformer: nn.Module, path: str | Path, fmt: str, dtype: torch.dtype = torch.bfloat16,
                   metadata: dict[str, str] | None = None, params: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the LoRA (safetensors; metadata ``format`` = ``fmt``) and return its path (``params`` as in
    ``flux_lora_state_dict``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(flux_lora_state_dict(transformer, dtype, params), str(path),
              metadata={"format": fmt, "trainer": "dreamo-nodes", **(metadata or {})})
    return path
