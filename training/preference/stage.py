"""The preference stage on the trainer: the model (the ``preference.base`` DreamO files merged into the frozen base,
tables frozen, a new LoRA the only trainable part: ``training/stacked_lora.py``), ``training.loop.train`` with the
``PreferenceObjective``, and the new LoRA exported as an ordinary FLUX LoRA (``output_dir/preference.lora_file``)
that stacks after Load DreamO LoRA through core ``LoraLoaderModelOnly`` and in ``dreamo --lora``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import trainable_state
from ..config import check_paths
from ..loop import train
from ..model import DreamOTrainModel
from ..parallel import is_sharded
from ..stacked_lora import save_flux_lora
from .config import PreferenceRunConfig, check_bases
from .objective import PreferenceObjective

logger = logging.getLogger("DreamO")
FORMAT = "dreamo-preference-lora"


@dataclass
class PreferenceResult:
    """The exported LoRA (None when the run stopped early, or on processes other than 0), the trained model
    (base + LoRA; FSDP: still sharded) and this process's per-step loss terms."""

    lora: Path | None
    model: DreamOTrainModel
    history: dict[str, list[float]]


def export_preference_lora(model: DreamOTrainModel, cfg: PreferenceRunConfig, main_process: bool) -> Path | None:
    """Write ``output_dir/preference.lora_file`` (bf16 with ``model.bf16``, else float32) on process 0 and return
    its path. Call it on every process: an FSDP model's LoRA is gathered from the shards first (a collective)."""
    params = trainable_state(model) if is_sharded(model) else None
    if not main_process:
        return None
    p = cfg.preference
    meta = {"mode": p.mode, "beta": str(p.beta), "localized": str(p.localized), "dilation": str(p.dilation),
            "anchor": str(p.anchor), "base": ",".join(p.base), "steps": str(cfg.total_steps),
            "rank": str(cfg.model.lora_rank)}
    dtype = torch.bfloat16 if cfg.model.uses_bf16 else torch.float32
    path = save_flux_lora(model.transformer, Path(cfg.output_dir) / p.lora_file, FORMAT, dtype, meta, params)
    logger.info("exported %s", path)
    return path


def train_preference(cfg: PreferenceRunConfig, stop_at: int | None = None,
                     model: DreamOTrainModel | None = None) -> PreferenceResult:
    """Run (or resume) the stage and export its LoRA. ``stop_at``: end after that step without exporting (a killed
    run; the same call again resumes). ``model``: ``preference_model(cfg)`` unless given (built after the
    datasets' rows are checked). Base files are checked first."""
    check_paths(cfg)
    check_bases(cfg)
    result = train(cfg, stop_at, model, export=False, objective=PreferenceObjective(cfg.preference))
    done = stop_at is None or stop_at >= cfg.total_steps
    lora = export_preference_lora(result.model, cfg, result.process_index == 0) if done else None
    return PreferenceResult(lora, result.model, result.history)
