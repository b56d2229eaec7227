"""The preference stage as the trainer's objective (``training/objective.py``): pair rows, pair batches, and per step
Flow-DPO (``dreamo_core.preference.flow_dpo``) or its SFT control.

Flow-DPO, one micro-step: the preferred and rejected targets are noised with the SAME ε and t (the step's noise is
drawn once per pair) and stacked into one batch of 2B with identical DreamO conditioning (references, captions,
hence embeddings, ids and placeholders); the reference model is the same network with the new LoRA switched off,
run once on that batch under ``no_grad``; the trained model runs once on it with gradients. SFT control
(``preference.mode: sft``): flow matching on the preferred targets alone, same data, noise and steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dreamo_core.preference.flow_dpo import flow_dpo_loss, token_errors
from dreamo_core.routing.losses import flow_matching_loss, noisy_latents

from ..codec import Codec
from ..config import StageConfig, TrainConfig
from ..data import BatchPlan
from ..model import DreamOTrainModel
from ..stacked_lora import model_on_base
from .batch import PairBatch, make_pair_batch
from .config import PreferenceConfig, PreferenceRunConfig, check_bases
from .dataset import PairRow, read_pairs

DPO_TERMS = ("loss", "margin", "accuracy", "anchor")
SFT_TERMS = ("loss",)


@contextmanager
def adapter_disabled(model: nn.Module) -> Iterator[None]:
    """The reference model: every peft LoRA layer in ``model`` returns its base layer's output inside the block,
    and is restored exactly after it. Only the flag peft's own ``enable_adapters(False)`` sets is switched;
    ``requires_grad`` is left alone (peft's toggle also flips it, and DDP / FSDP hold the LoRA parameters'
    gradient hooks; a ``no_grad`` pass needs none)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        raise ValueError("the preference stage's reference model is the network with its peft LoRA switched off, "
                         "but the model has no peft LoRA layer")
    before = [m.disable_adapters for m in layers]
    for m in layers:
        m._disable_adapters = True
    try:
        yield
    finally:
        for m, was in zip(layers, before):
            m._disable_adapters = was


def pair_inputs(batch: PairBatch, noise: torch.Tensor, t: torch.Tensor, guidance: float) -> dict[str, Any]:
    """The 2B-row model inputs of a pair batch: [preferred; rejected] noised with [ε; ε] at [t; t], every reference
    and caption repeated, and the velocity targets (2B, N, 64)."""
    x0, eps, tt = torch.cat([batch.latents, batch.rejected]), torch.cat([noise, noise]), torch.cat([t, t])
    refs = [replace(r, tokens=torch.cat([r.tokens, r.tokens])) for r in batch.refs]
    return {"latents": noisy_latents(x0, eps, tt), "target_grid": batch.grid, "refs": refs, "sigma": tt,
            "guidance": torch.full_like(tt, guidance), "captions": batch.captions * 2, "target": eps - x0}


def dpo_losses(model: nn.Module, batch: PairBatch, cfg: TrainConfig, noise: torch.Tensor, t: torch.Tensor,
               p: PreferenceConfig) -> dict[str, torch.Tensor]:
    """{"loss", "margin", "accuracy", "anchor"} of one pair batch (``flow_dpo_loss``)."""
    inputs = pair_inputs(batch, noise, t, cfg.guidance)
    target = inputs.pop("target")
    with torch.no_grad(), adapter_disabled(getattr(model, "module", model)):  # (DDP wraps the model as .module)
        ref_pred, _ = model(**inputs)
    pred, _ = model(**inputs)
    err, ref_err = token_errors(pred, target), token_errors(ref_pred, target)
    b = batch.latents.shape[0]
    terms = flow_dpo_loss(err[:b], err[b:], ref_err[:b], ref_err[b:], p.beta,
                          batch.region if p.localized else None, p.anchor)
    return {"loss": terms.loss, "margin": terms.margin, "accuracy": terms.accuracy, "anchor": terms.anchor}


def sft_losses(model: nn.Module, batch: PairBatch, cfg: TrainConfig, noise: torch.Tensor,
               t: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"loss"}: flow matching on the preferred targets only (the rejected never enter the model)."""
    pred, _ = model(latents=noisy_latents(batch.latents, noise, t), target_grid=batch.grid, refs=batch.refs, sigma=t,
                    guidance=torch.full_like(t, cfg.guidance), captions=batch.captions)
    return {"loss": flow_matching_loss(pred, batch.latents, noise)}


def preference_model(cfg: PreferenceRunConfig) -> DreamOTrainModel:
    """The stage's starting model: ``cfg.model``'s transformer with the ``preference.base`` files merged, their
    tables frozen, and a fresh LoRA of ``model.lora_rank`` (zero: it samples as the base does, so samples drawn
    from it before training are on-policy)."""
    check_bases(cfg)
    return model_on_base(cfg.model, cfg.bases, "preference.base")


class PreferenceObjective:
    """Flow-DPO (``mode: dpo``) or the SFT control (``mode: sft``) on pair datasets; the model is
    ``preference_model``'s unless one is given to ``train``."""

    def __init__(self, settings: PreferenceConfig):
        self.settings = settings
        self.terms = DPO_TERMS if settings.mode == "dpo" else SFT_TERMS

    def model(self, cfg: PreferenceRunConfig) -> DreamOTrainModel:
        return preference_model(cfg)

    def rows(self, folder: str | Path, cfg: TrainConfig) -> list[PairRow]:
        return read_pairs(folder, cfg.data.buckets, cfg.data.ref_res, cfg.data.on_bad_row, self.settings.localized,
                          cfg.data.placement)

    def batch(self, plan: BatchPlan, codec: Codec, cfg: TrainConfig, stage: StageConfig,
              device: torch.device) -> PairBatch:
        return make_pair_batch(plan, codec, cfg.data.ref_res, self.settings.dilation, device)

    def losses(self, model: nn.Module, batch: PairBatch, cfg: TrainConfig, noise: torch.Tensor, t: torch.Tensor,
               layers: frozenset[str]) -> dict[str, torch.Tensor]:
        if self.settings.mode == "sft":
            return sft_losses(model, batch, cfg, noise, t)
        return dpo_losses(model, batch, cfg, noise, t, self.settings)

    def progress(self, means: dict[str, float]) -> dict[str, str]:
        """The progress line: loss (and for Flow-DPO the margin, reward accuracy and anchor)."""
        if self.settings.mode == "sft":
            return {"loss": f"{means['loss']:.4f}"}
        return {"loss": f"{means['loss']:.4f}", "margin": f"{means['margin']:.3f}", "acc": f"{means['accuracy']:.2f}",
                "anchor": f"{means['anchor']:.4f}"}

    def order(self) -> dict[str, Any]:
        """The objective in the checkpoint: a run never resumes as another (Flow-DPO / SFT, localized or not)."""
        localized = "/localized" if self.settings.localized and self.settings.mode == "dpo" else ""
        return {"objective": f"preference/{self.settings.mode}{localized}"}
