"""One training run, phase by phase: ``train`` reads top to bottom as the loop it runs.

``setup`` (accelerator, datasets checked, model, FSDP sharding, optimizer, batch sampler, codec) -> ``resume_run``
(the checkpoint process 0 chose, the loss log trimmed to it, DDP wrapping) -> per step ``optimizer_step`` (the
stage's lr, ``grad_accum`` micro-steps of batch -> losses -> the all-process finiteness check -> backward,
gradient clipping, the optimizer) and ``record_step`` (loss log, checkpoint, sample) -> ``export_trained`` (the
official DreamO file). The command and what each step guarantees: ``training/train.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from .attention_capture import select_layers
from .batch import micro_shard, step_noise
from .checkpoint import prune_checkpoints, save_checkpoint, save_sharded_checkpoint, trainable_state
from .codec import Codec, make_codec
from .config import StageConfig, TrainConfig, check_paths
from .data import BatchSampler
from .export import export_dreamo
from .loss_log import LOSS_LOG, log_losses, trim_loss_log
from .model import DreamOTrainModel
from .objective import Objective, RoutingObjective
from .parallel import grad_sync, shard_model
from .resume import data_order, resume
from .sampling import save_sample_strip
from .schedule import learning_rate, stage_at
from .step_losses import check_grad_norm, reduced_losses
from .text.cache import CachedTextEncoder

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger("DreamO")


@dataclass
class TrainResult:
    """Per-step loss history of this process and the trained (unwrapped) model."""

    history: dict[str, list[float]]
    model: DreamOTrainModel
    process_index: int


@dataclass
class Run:
    """What the loop holds between steps. ``model`` is the unwrapped model (checkpoints, samples, export);
    ``step_model`` is what a step calls (DDP-wrapped, or the FSDP2-sharded model itself)."""

    cfg: TrainConfig
    acc: Accelerator
    model: DreamOTrainModel
    step_model: torch.nn.Module
    opt: torch.optim.Optimizer
    trainables: list[torch.nn.Parameter]
    groups: dict[str, list]
    order: dict
    sampler: BatchSampler
    codec: Codec
    layers: frozenset[str]
    fsdp: bool
    objective: Objective

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.output_dir)


@dataclass
class StepOutcome:
    """One optimizer step: ``done`` steps finished, its stage and lr, the loss terms' means over the processes
    (logged) and this process's own (the history), and the last micro-step's batch (sampled from)."""

    done: int
    stage_no: int
    stage: StageConfig
    lr: float
    means: dict[str, float]
    local: dict[str, float]
    batch: Any


def make_accelerator(mixed_precision: str, grad_accum: int) -> Accelerator:
    """Accelerate with bf16 autocast (or none) and ``grad_accum`` micro-steps. Accelerate keeps one process-wide
    state; a second run in the same process (tests, subject tuning) with another precision resets it (the
    process group, Accelerate's PartialState, is kept)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available(),
                       gradient_accumulation_steps=grad_accum)


def setup(cfg: TrainConfig, model: DreamOTrainModel | None, objective: Objective) -> Run:
    """The accelerator, the checked datasets (the objective's rows, before any model loads), the model on its
    device (FSDP2-sharded with ``distributed: fsdp``), AdamW over the parameters that require grad, the batch
    sampler and the codec."""
    acc = make_accelerator("bf16" if cfg.model.uses_bf16 else "no", cfg.grad_accum)
    groups = {name: objective.rows(path, cfg) for name, path in cfg.data.datasets.items()}
    order = data_order(cfg, groups) | objective.order()
    model = (objective.model(cfg) if model is None else model).to(acc.device)
    layers = select_layers(model.transformer, cfg.loss.route_layers)
    fsdp = cfg.distributed == "fsdp" and acc.num_processes > 1
    if fsdp:
        shard_model(model, acc.device, cfg.model.uses_bf16)
        if isinstance(model.text_encoder, CachedTextEncoder):
            model.text_encoder.collective = True  # T5 calls are collectives now
    trainables = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainables, lr=cfg.stages[0].lr, weight_decay=cfg.weight_decay)
    sampler = BatchSampler(groups, cfg.data.batch_size * cfg.grad_accum, cfg.data.plain_caption_prob, cfg.seed)
    codec = make_codec(cfg.model.codec, cfg.model.vae_path, acc.device)
    return Run(cfg, acc, model, model, opt, trainables, groups, order, sampler, codec, layers, fsdp, objective)


def resume_run(run: Run) -> int:
    """Restore the checkpoint process 0 chose (its step; 0 without one), trim the loss log to it, then let
    Accelerate wrap the model (DDP; an FSDP2 model is already sharded) and the optimizer."""
    cfg, acc = run.cfg, run.acc
    start = resume(cfg, acc, run.model, run.opt, run.order, run.out_dir)
    if acc.is_main_process and cfg.log_every:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        trim_loss_log(run.out_dir / LOSS_LOG, start)
    if run.fsdp:
        run.opt = acc.prepare(run.opt)  # Accelerate would wrap DDP around the FSDP2 model
    else:
        run.step_model, run.opt = acc.prepare(run.model, run.opt)
    return start


def micro_step(run: Run, step: int, j: int, stage: StageConfig, mixture: dict[str, float], done: int,
               ) -> tuple[dict[str, float], dict[str, torch.Tensor], Any]:
    """Micro-step ``j`` of ``step``: this process's shard of the batch and noise, the objective's losses (means
    over the processes checked finite before backward: all processes stop together), backward (synced on the
    last)."""
    cfg, acc, objective = run.cfg, run.acc, run.objective
    shard, shards = micro_shard(j, acc.process_index, acc.num_processes, cfg.grad_accum)
    batch = objective.batch(run.sampler.plan(step, mixture, shard, shards), run.codec, cfg, stage, acc.device)
    noise, t = step_noise(cfg, step, tuple(batch.latents.shape), shard, shards)
    with grad_sync(acc, run.step_model) as sync:
        assert sync == (j == cfg.grad_accum - 1), "gradient accumulation out of step with Accelerate's counter"
        with acc.autocast():
            losses = objective.losses(run.step_model, batch, cfg, noise.to(acc.device), t.to(acc.device), run.layers)
        # before backward: all processes stop together
        means = reduced_losses(acc, losses, done, stage.name, objective.terms)
        acc.backward(losses["loss"])  # divided by grad_accum
    return means, losses, batch


def clip_gradients(run: Run, done: int, stage: StageConfig) -> None:
    """Clip to ``max_grad_norm`` (0: off) and stop on a non-finite norm (the same on every process)."""
    if run.cfg.max_grad_norm <= 0:
        return
    if run.fsdp:
        norm = torch.nn.utils.clip_grad_norm_(run.trainables, run.cfg.max_grad_norm)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    else:
        norm = run.acc.clip_grad_norm_(run.trainables, run.cfg.max_grad_norm)
    check_grad_norm(norm, done, stage.name)


def optimizer_step(run: Run, step: int) -> StepOutcome:
    """Global step ``step``: the stage's lr, ``grad_accum`` micro-steps, clipping, the optimizer step."""
    done = step + 1
    stage_no, stage, in_stage = stage_at(run.cfg, step)
    lr = learning_rate(stage, in_stage)
    for group in run.opt.param_groups:
        group["lr"] = lr
    mixture = stage.mixture or {n: 1.0 for n in run.groups}
    k, terms = run.cfg.grad_accum, run.objective.terms
    means, local = dict.fromkeys(terms, 0.0), dict.fromkeys(terms, 0.0)
    for j in range(k):
        micro, losses, batch = micro_step(run, step, j, stage, mixture, done)
        for key in terms:
            means[key] += micro[key] / k
            local[key] += float(losses[key].detach()) / k
    clip_gradients(run, done, stage)
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    return StepOutcome(done, stage_no, stage, lr, means, local, batch)


def log_step(run: Run, o: StepOutcome) -> None:
    """Every ``log_every`` steps process 0 appends the step's means to the loss log."""
    if run.acc.is_main_process and run.cfg.log_every and o.done % run.cfg.log_every == 0:
        log_losses(run.out_dir / LOSS_LOG, {"step": o.done, "stage": o.stage.name, "lr": o.lr, **o.means})


def checkpoint_step(run: Run, o: StepOutcome) -> None:
    """Every ``checkpoint_every`` steps and at the last: a checkpoint (FSDP: every process its shards), then only
    the newest ``keep_checkpoints`` stay."""
    cfg, acc = run.cfg, run.acc
    if o.done % cfg.checkpoint_every != 0 and o.done != cfg.total_steps:
        return
    if run.fsdp:
        save_sharded_checkpoint(run.out_dir, o.done, o.stage_no, run.model, run.opt, cfg.seed, acc.process_index,
                                acc.num_processes, acc.wait_for_everyone, run.order, o.stage.name)
    elif acc.is_main_process:
        save_checkpoint(run.out_dir, o.done, o.stage_no, run.model, run.opt, cfg.seed, run.order, o.stage.name)
    if acc.is_main_process:
        prune_checkpoints(run.out_dir, cfg.keep_checkpoints)
    acc.wait_for_everyone()


def sample_step(run: Run, o: StepOutcome) -> None:
    """Every ``sample_every`` steps: ``samples/step_N.png`` of the step's last batch (written by process 0)."""
    acc = run.acc
    if run.cfg.sample_every and o.done % run.cfg.sample_every == 0 and (acc.is_main_process or run.fsdp):
        with acc.autocast():  # a bf16 base samples under the training's autocast
            save_sample_strip(run.model, run.codec, o.batch, run.out_dir / "samples" / f"step_{o.done:08d}.png",
                              acc.is_main_process)


def record_step(run: Run, o: StepOutcome) -> None:
    """What follows an optimizer step: the loss log, a checkpoint, a sample."""
    log_step(run, o)
    checkpoint_step(run, o)
    sample_step(run, o)


def export_trained(run: Run) -> None:
    """``output_dir/dreamo_trained.safetensors`` in the official format (FSDP: the trainables gathered first)."""
    params = trainable_state(run.model) if run.fsdp else None  # gathered on every process (a collective)
    if run.acc.is_main_process:
        path = export_dreamo(run.model, run.out_dir / "dreamo_trained.safetensors",
                             torch.bfloat16 if run.cfg.model.uses_bf16 else torch.float32, params)
        logger.info("exported %s", path)


def train(cfg: TrainConfig, stop_at: int | None = None, model: DreamOTrainModel | None = None,
          export: bool = True, objective: Objective | None = None) -> TrainResult:
    """Run (or resume) training. ``stop_at`` ends the run after that global step without a final checkpoint
    (tests use it to simulate a killed run). Datasets are checked before the model loads (DatasetError).
    ``model``: a prepared model instead of the objective's (``build_model(cfg.model)`` for DreamO's; subject
    tuning: base merged, tables frozen; only its parameters that require grad train); ``export=False`` skips
    ``dreamo_trained.safetensors``; ``objective``: what the steps optimise (default DreamO's ``RoutingObjective``)."""
    check_paths(cfg)
    run = setup(cfg, model, objective or RoutingObjective())
    start = resume_run(run)
    end = cfg.total_steps if stop_at is None else min(stop_at, cfg.total_steps)
    history: dict[str, list[float]] = {key: [] for key in run.objective.terms}
    bar = tqdm(range(start, end), disable=not (run.acc.is_local_main_process and cfg.progress), desc="DreamO")
    for step in bar:
        outcome = optimizer_step(run, step)
        for key in run.objective.terms:
            history[key].append(outcome.local[key])
        bar.set_postfix(stage=outcome.stage.name, **run.objective.progress(outcome.means))
        record_step(run, outcome)
    if export and end == cfg.total_steps:
        export_trained(run)
    run.acc.wait_for_everyone()
    return TrainResult(history, run.model, run.acc.process_index)
