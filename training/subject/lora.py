"""Subject tuning's model and file: the engine's new LoRA on a merged DreamO base (``training/stacked_lora.py``: base
files merged, tables frozen, an ordinary FLUX LoRA that stacks after Load DreamO LoRA), under the tune's names and
its ``format`` tag."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dreamo_core.generator.loading import LoraRequest

from ..config import ModelConfig
from ..model import DreamOTrainModel
from ..stacked_lora import model_on_base, save_flux_lora

FORMAT = "dreamo-subject-lora"


def subject_tune_model(cfg: ModelConfig, bases: Sequence[LoraRequest]) -> DreamOTrainModel:
    """The trainer's model with the ``--base`` files merged under a fresh LoRA and the tables frozen."""
    return model_on_base(cfg, bases, "--base")


def save_subject_lora(transformer: nn.Module, path: str | Path, dtype: torch.dtype = torch.bfloat16,
                      metadata: dict[str, str] | None = None) -> Path:
    """Write the subject LoRA (safetensors) and return its path."""
    return save_flux_lora(transformer, path, FORMAT, dtype, metadata)
