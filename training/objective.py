"""What a training run optimises, as the loop sees it: the model it trains (when none is given), which rows a dataset
folder holds, how a step's rows become a batch, the loss terms of a batch and how they show on the progress line. The loop (``training/loop.py``) is the same
for every objective: the batch plan, the noise and t of a step, gradient accumulation, DDP / FSDP, the
all-process finiteness check, checkpoints, resume and the loss log.

- ``RoutingObjective``: DreamO's own (paper Sec. 3.3), L_diff + L_route + L_holder (``step_losses.compute_losses``).
- ``training.preference.objective.PreferenceObjective``: Flow-DPO on preferred / rejected pairs (or its SFT control).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from .batch import Batch, make_batch
from .codec import Codec
from .config import StageConfig, TrainConfig
from .data import BatchPlan, Row, read_metadata
from .model import DreamOTrainModel, build_model
from .step_losses import LOSS_TERMS, compute_losses


class Objective(Protocol):
    """``terms``: the loss terms a step logs, ``"loss"`` (the one back-propagated) first. A batch has ``latents``
    (B, N, 64): the step's noise and t are drawn for that shape (one per row)."""

    terms: tuple[str, ...]

    def model(self, cfg: TrainConfig) -> DreamOTrainModel: ...

    def rows(self, folder: str | Path, cfg: TrainConfig) -> list[Row]: ...

    def batch(self, plan: BatchPlan, codec: Codec, cfg: TrainConfig, stage: StageConfig, device: torch.device) -> Any: ...

    def losses(self, model: torch.nn.Module, batch: Any, cfg: TrainConfig, noise: torch.Tensor, t: torch.Tensor,
               layers: frozenset[str]) -> dict[str, torch.Tensor]: ...

    def progress(self, means: dict[str, float]) -> dict[str, str]: ...

    def order(self) -> dict[str, Any]: ...


class RoutingObjective:
    """DreamO's attention-routing objective on the trainer's dataset format (``training/data.py``)."""

    terms = LOSS_TERMS

    def model(self, cfg: TrainConfig) -> DreamOTrainModel:
        return build_model(cfg.model)

    def rows(self, folder: str | Path, cfg: TrainConfig) -> list[Row]:
        return read_metadata(folder, cfg.data.buckets, cfg.data.ref_res, cfg.data.on_bad_row,
                             placement=cfg.data.placement)

    def batch(self, plan: BatchPlan, codec: Codec, cfg: TrainConfig, stage: StageConfig, device: torch.device) -> Batch:
        return make_batch(plan, codec, cfg.data.ref_res, stage.drop_for(plan.group), device)

    def losses(self, model: torch.nn.Module, batch: Batch, cfg: TrainConfig, noise: torch.Tensor, t: torch.Tensor,
               layers: frozenset[str]) -> dict[str, torch.Tensor]:
        return compute_losses(model, batch, cfg, noise, t, layers)

    def progress(self, means: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{means['loss']:.4f}", "route": f"{means['route']:.3f}"}

    def order(self) -> dict[str, Any]:
        """Nothing beyond the data order (checkpoints written before objectives existed resume unchanged)."""
        return {}
