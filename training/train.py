"""DreamO attention-routing trainer: ``python -m training.train CONFIG.yaml [--key=value ...]``.

Also runs under ``accelerate launch`` (DDP): every process builds the same global batch plan and takes its own
rows; process 0 writes checkpoints, samples and the exported DreamO file.

Per step (paper Sec. 3.3): z_t = (1 - t) z0 + t eps; the model predicts v; L_diff = |v - (eps - z0)|²;
L_route / L_holder come from the attention records of the chosen layers; L = Σ λ·L.

Every step the loss terms are averaged over the processes (one all-reduce) BEFORE backward: when one is not
finite on any process, every process raises the same ``NonFiniteLossError`` and no optimizer step is taken (a
non-finite gradient norm, the same on every process after DDP's all-reduce, stops the step the same way). Every
``log_every`` steps process 0 appends ``{"step", "stage", "lr", "loss", "diff", "route", "holder"}`` (means over
the processes) to ``output_dir/loss_log.jsonl``; after each checkpoint only the newest ``keep_checkpoints`` stay.

Exit codes: 0 done; 1 stopped on a non-finite loss; 2 usage, config, model folder or dataset error (one line
on stderr, no traceback; the datasets' rows are checked, images decoded, before the model loads).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from tqdm import tqdm

from dreamo_core.generator.flux_forward import ReferenceTokens
from dreamo_core.routing.losses import flow_matching_loss, noisy_latents, placeholder_loss, routing_loss

from .attention_capture import select_layers
from .checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    write_text_atomic,
)
from .codec import PixelCodec, ToyCodec, VAECodec, decode_tokens, encode_tokens
from .config import StageConfig, TrainConfig, check_paths, load_config
from .data import BatchPlan, BatchSampler, DatasetError, load_sample, read_metadata
from .export import export_dreamo
from .model import DreamOTrainModel, build_model
from .sampling import euler_sample

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger("DreamO")
LOSS_TERMS = ("loss", "diff", "route", "holder")
LOSS_LOG = "loss_log.jsonl"
USAGE = "usage: python -m training.train CONFIG.yaml [--key=value ...]   (-h, --help: this help)"


class NonFiniteLossError(FloatingPointError):
    """A loss term or the gradient norm is not finite; raised on every process, before the optimizer step."""


@dataclass
class Batch:
    """One process's share of a step. latents (B, N, 64); masks (n_refs, B, N); holder (B,) 1 = placeholders."""

    latents: torch.Tensor
    grid: tuple[int, int]
    refs: list[ReferenceTokens]
    masks: torch.Tensor
    captions: list[str]
    holder: torch.Tensor
    ref_keep: torch.Tensor | None


def stage_at(cfg: TrainConfig, step: int) -> tuple[int, StageConfig, int]:
    """(stage number, stage, step within the stage) for a global step."""
    start = 0
    for i, stage in enumerate(cfg.stages):
        if step < start + stage.steps:
            return i, stage, step - start
        start += stage.steps
    raise ValueError(f"step {step} is past the last stage ({cfg.total_steps} steps in all)")


def learning_rate(stage: StageConfig, step_in_stage: int) -> float:
    """Linear warm-up to the stage's lr, then constant."""
    return stage.lr * min(1.0, (step_in_stage + 1) / max(1, stage.warmup))


def keep_indices(lengths: list[int], drop: float, seed: int) -> torch.Tensor | None:
    """Sorted positions of the reference tokens to keep (at least one per reference), or None for no drop."""
    if drop <= 0:
        return None
    g = torch.Generator().manual_seed(seed)
    keep, start = [], 0
    for n in lengths:
        k = max(1, round(n * (1 - drop)))
        keep.append(torch.randperm(n, generator=g)[:k].sort().values + start)
        start += n
    return torch.cat(keep)


def make_batch(plan: BatchPlan, codec: PixelCodec | VAECodec, ref_res: int, drop: float, device: torch.device) -> Batch:
    """Load, encode and stack the plan's rows (all from one bucket)."""
    samples = [load_sample(row, ref_res, plain) for row, plain in zip(plan.rows, plan.use_plain)]
    latents, grid = encode_tokens(codec, torch.stack([s.target for s in samples]).to(device))
    refs = []
    for j, index in enumerate(samples[0].indices):
        tokens, rgrid = encode_tokens(codec, torch.stack([s.refs[j] for s in samples]).to(device))
        refs.append(ReferenceTokens(tokens, rgrid, index))
    masks = torch.stack([s.masks for s in samples], dim=1).to(device)  # (n_refs, B, N)
    holder = torch.tensor([float(s.has_placeholders) for s in samples], device=device)
    keep = keep_indices([r.tokens.shape[1] for r in refs], drop, plan.ref_keep_seed)
    return Batch(latents, grid, refs, masks, [s.caption for s in samples], holder, keep)


def step_noise(cfg: TrainConfig, step: int, shape: tuple[int, ...], rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise (B_local, N, C) and t (B_local,) drawn for the GLOBAL batch from (seed, step), then sharded, so
    any number of processes sees the same numbers as one process would."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    global_b = shape[0] * world
    noise = torch.randn(global_b, *shape[1:], generator=g)
    u = torch.randn(global_b, generator=g)
    t = torch.sigmoid(u) if cfg.timestep_sampling == "logit_normal" else torch.rand(global_b, generator=g)
    return noise[rank::world], t[rank::world]


def compute_losses(model: torch.nn.Module, batch: Batch, cfg: TrainConfig, noise: torch.Tensor, t: torch.Tensor,
                   layers: frozenset[str]) -> dict[str, torch.Tensor]:
    """{"loss", "diff", "route", "holder"} for one batch (route/holder are 0 when their weight is 0)."""
    lc = cfg.loss
    use_route, use_holder = lc.route > 0, lc.holder > 0 and len(batch.refs) > 1 and bool(batch.holder.any())
    z_t = noisy_latents(batch.latents, noise, t)
    guidance = torch.full_like(t, cfg.guidance)
    pred, cap = model(z_t, batch.grid, batch.refs, t, guidance, batch.captions, batch.ref_keep,
                      capture_layers=layers if (use_route or use_holder) else frozenset(),
                      route_mode=lc.route_mode, with_placeholders=use_holder)
    zero = pred.sum() * 0.0
    out = {"diff": flow_matching_loss(pred, batch.latents, noise), "route": zero, "holder": zero}
    if use_route:
        out["route"] = routing_loss(cap.stacked_route(), batch.masks, lc.route_mode)
    if use_holder:
        n_refs, b = batch.masks.shape[:2]
        slots = torch.arange(n_refs, device=pred.device)[:, None].expand(n_refs, b)
        out["holder"] = placeholder_loss(cap.stacked_holder(), slots, batch.holder[None].expand(n_refs, b))
    out["loss"] = lc.diff * out["diff"] + lc.route * out["route"] + lc.holder * out["holder"]
    return out


def save_samples(model: DreamOTrainModel, codec: PixelCodec | VAECodec, batch: Batch, path: Path) -> None:
    """Sample the batch's first prompt with its references; write [refs | sample | target] as one PNG."""
    refs = [ReferenceTokens(r.tokens[:1], r.grid, r.index) for r in batch.refs]
    z = euler_sample(model, batch.grid, refs, batch.captions[:1])
    tiles = [decode_tokens(codec, r.tokens, r.grid)[0] for r in refs]
    tiles += [decode_tokens(codec, z, batch.grid)[0], decode_tokens(codec, batch.latents[:1], batch.grid)[0]]
    h = max(x.shape[0] for x in tiles)
    tiles = [torch.nn.functional.pad(x, (0, 0, 0, 0, 0, h - x.shape[0]), value=1.0) for x in tiles]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((torch.cat(tiles, dim=1).clamp(0, 1) * 255).byte().cpu().numpy()).save(path)


def reduced_losses(acc: Accelerator, losses: dict[str, torch.Tensor], done: int, stage: str) -> dict[str, float]:
    """Each loss term's mean over the processes (one all-reduce of values and non-finite flags). When a term is
    not finite on any process, every process raises the same NonFiniteLossError (call it before backward)."""
    values = torch.stack([losses[k].detach().float().reshape(()) for k in LOSS_TERMS])
    bad = ~torch.isfinite(values)
    sums, counts = acc.reduce(torch.stack([values.masked_fill(bad, 0.0), bad.float()]), reduction="sum").tolist()
    world = acc.num_processes
    procs = "process" if world == 1 else "processes"
    named = [f"{k} (on {int(n)} of {world} {procs})" for k, n in zip(LOSS_TERMS, counts) if n]
    if named:
        raise NonFiniteLossError(f"step {done} (stage {stage!r}): non-finite loss term(s): {', '.join(named)}; "
                                 f"stopped before the optimizer step (parameters are those after step {done - 1}); "
                                 "lower the stage lr or check the data")
    return {k: v / world for k, v in zip(LOSS_TERMS, sums)}


def check_grad_norm(norm: torch.Tensor, done: int, stage: str) -> None:
    """NonFiniteLossError for a non-finite gradient norm (after DDP's all-reduce: the same on every process)."""
    if not bool(torch.isfinite(norm)):
        raise NonFiniteLossError(f"step {done} (stage {stage!r}): the gradient norm is {float(norm)} although the "
                                 f"loss terms are finite; stopped before the optimizer step (parameters are those "
                                 f"after step {done - 1}); lower the stage lr or check the data")


def trim_loss_log(path: Path, step: int) -> None:
    """Keep the loss log's lines up to ``step`` (a resumed run logs the steps after its checkpoint again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            pass  # a line cut short by a kill
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


def log_losses(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to the loss log."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


@dataclass
class TrainResult:
    """Per-step loss history of this process and the trained (unwrapped) model."""

    history: dict[str, list[float]]
    model: DreamOTrainModel
    process_index: int


def train(cfg: TrainConfig, stop_at: int | None = None) -> TrainResult:
    """Run (or resume) training. ``stop_at`` ends the run after that global step without a final checkpoint
    (tests use it to simulate a killed run). Datasets are checked before the model loads (DatasetError)."""
    from accelerate import Accelerator

    check_paths(cfg)
    acc = Accelerator(mixed_precision="bf16" if cfg.model.bf16 else "no", cpu=not torch.cuda.is_available())
    out_dir, log_path = Path(cfg.output_dir), Path(cfg.output_dir) / LOSS_LOG
    groups = {name: read_metadata(path, cfg.data.buckets, cfg.data.ref_res, cfg.data.on_bad_row)
              for name, path in cfg.data.datasets.items()}
    model = build_model(cfg.model).to(acc.device)
    layers = select_layers(model.transformer, cfg.loss.route_layers)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.stages[0].lr,
                            weight_decay=cfg.weight_decay)
    sampler = BatchSampler(groups, cfg.data.batch_size, cfg.data.plain_caption_prob, cfg.seed)
    codec = {"vae": lambda: VAECodec(cfg.model.vae_path, acc.device), "toy": ToyCodec}.get(cfg.model.codec, PixelCodec)()
    start = 0
    ck = latest_checkpoint(out_dir)
    if ck is not None:
        start = load_checkpoint(ck, model, opt)["step"]
        logger.info("resuming from %s at step %d", ck, start)
    if acc.is_main_process and cfg.log_every:
        out_dir.mkdir(parents=True, exist_ok=True)
        trim_loss_log(log_path, start)
    ddp_model, opt = acc.prepare(model, opt)
    history: dict[str, list[float]] = {k: [] for k in LOSS_TERMS}
    end = cfg.total_steps if stop_at is None else min(stop_at, cfg.total_steps)
    bar = tqdm(range(start, end), disable=not (acc.is_local_main_process and cfg.progress), desc="DreamO")
    for step in bar:
        done = step + 1
        stage_no, stage, in_stage = stage_at(cfg, step)
        lr = learning_rate(stage, in_stage)
        for group in opt.param_groups:
            group["lr"] = lr
        plan = sampler.plan(step, stage.mixture or {n: 1.0 for n in groups}, acc.process_index, acc.num_processes)
        batch = make_batch(plan, codec, cfg.data.ref_res, stage.ref_token_drop, acc.device)
        noise, t = step_noise(cfg, step, tuple(batch.latents.shape), acc.process_index, acc.num_processes)
        with acc.autocast():
            losses = compute_losses(ddp_model, batch, cfg, noise.to(acc.device), t.to(acc.device), layers)
        means = reduced_losses(acc, losses, done, stage.name)  # before backward: all processes stop together
        acc.backward(losses["loss"])
        if cfg.max_grad_norm > 0:
            norm = acc.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
            check_grad_norm(norm, done, stage.name)
        opt.step()
        opt.zero_grad(set_to_none=True)
        for k in history:
            history[k].append(float(losses[k].detach()))
        bar.set_postfix(stage=stage.name, loss=f"{means['loss']:.4f}", route=f"{means['route']:.3f}")
        if acc.is_main_process and cfg.log_every and done % cfg.log_every == 0:
            log_losses(log_path, {"step": done, "stage": stage.name, "lr": lr, **means})
        if done % cfg.checkpoint_every == 0 or done == cfg.total_steps:
            if acc.is_main_process:
                save_checkpoint(out_dir, done, stage_no, model, opt, cfg.seed)
                prune_checkpoints(out_dir, cfg.keep_checkpoints)
            acc.wait_for_everyone()
        if cfg.sample_every and done % cfg.sample_every == 0 and acc.is_main_process:
            save_samples(model, codec, batch, out_dir / "samples" / f"step_{done:08d}.png")
    if end == cfg.total_steps and acc.is_main_process:
        path = export_dreamo(model, out_dir / "dreamo_trained.safetensors",
                             torch.bfloat16 if cfg.model.bf16 else torch.float32)
        logger.info("exported %s", path)
    acc.wait_for_everyone()
    return TrainResult(history, model, acc.process_index)


def fail(error: BaseException | str, code: int) -> int:
    """Print ``training.train: error: ...`` as one line on stderr; return the exit code."""
    print("training.train: error: " + " ".join(str(error).splitlines()), file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m training.train CONFIG.yaml [--key=value ...]``; exit codes in the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(f"{USAGE}\n\n{__doc__}")
        return 0
    if not argv or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return fail("no config file given (the first argument is a YAML file, e.g. training/configs/tiny.yaml)", 2)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(argv[0], argv[1:])
        check_paths(config)
    except (ValueError, FileNotFoundError, KeyError) as e:  # bad config or model folder: a message, not a traceback
        return fail(e, 2)
    try:
        train(config)
    except DatasetError as e:
        return fail(e, 2)
    except NonFiniteLossError as e:
        return fail(e, 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
