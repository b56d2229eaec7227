"""DreamO attention-routing trainer: ``python -m training.train CONFIG.yaml [--key=value ...]``.

Also runs under ``accelerate launch`` (DDP, or FSDP2 with ``distributed: fsdp``): every process builds the same
global batch plan and takes its own rows; process 0 writes checkpoints (FSDP: every process its shards),
samples and the exported DreamO file. ``grad_accum: k`` runs k micro-steps of ``data.batch_size`` rows per
optimizer step (Accelerate's ``accumulate``: no gradient sync before the last). A resume is decided on process 0
and broadcast (``resume``), so the other processes need not see ``output_dir``.

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
    CheckpointData,
    CheckpointMismatchError,
    apply_checkpoint,
    check_resumable,
    latest_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    read_rng,
    read_shards,
    save_checkpoint,
    save_sharded_checkpoint,
    shard_name,
    trainable_state,
    write_text_atomic,
)
from .codec import PixelCodec, VAECodec, decode_tokens, encode_tokens, make_codec
from .config import StageConfig, TrainConfig, check_paths, load_config
from .data import BatchPlan, BatchSampler, DatasetError, load_sample, read_metadata
from .export import export_dreamo
from .model import DreamOTrainModel, build_model
from .parallel import all_true, broadcast_json, broadcast_tensors, grad_sync, is_sharded, shard_model
from .sampling import euler_sample
from .text.cache import CachedTextEncoder

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


def save_samples(model: DreamOTrainModel, codec: PixelCodec | VAECodec, batch: Batch, path: Path,
                 write: bool = True) -> None:
    """Sample the batch's first prompt with its references; write [refs | sample | target] as one PNG (under
    FSDP every process samples, a collective forward, and only ``write`` ones save)."""
    refs = [ReferenceTokens(r.tokens[:1], r.grid, r.index) for r in batch.refs]
    z = euler_sample(model, batch.grid, refs, batch.captions[:1])
    tiles = [decode_tokens(codec, r.tokens, r.grid)[0] for r in refs]
    tiles += [decode_tokens(codec, z, batch.grid)[0], decode_tokens(codec, batch.latents[:1], batch.grid)[0]]
    if not write:
        return
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


def data_order(cfg: TrainConfig, groups: dict[str, list]) -> dict[str, Any]:
    """What the data order and noise of a step depend on besides (seed, step); recorded in checkpoints."""
    order = {"batch_size": cfg.data.batch_size, "grad_accum": cfg.grad_accum,
             "datasets": {name: len(rows) for name, rows in sorted(groups.items())}, "buckets": cfg.data.buckets,
             "plain_caption_prob": cfg.data.plain_caption_prob, "timestep_sampling": cfg.timestep_sampling}
    return json.loads(json.dumps(order))  # JSON-normal form, as read back from state.json


def resume_point(cfg: TrainConfig, out_dir: Path, order: dict[str, Any], rank: int,
                 shards: int | None) -> dict[str, Any]:
    """Process 0 alone: ``{"path", "step"}`` of the checkpoint to resume (path None: start at 0) or ``{"error"}``
    (an incomplete ``latest``, another stage plan, data order or shard count); every process gets it by
    broadcast. ``shards``: the number of FSDP processes, None when not sharded."""
    if rank != 0:
        return {}
    try:
        ck = latest_checkpoint(out_dir)
        if ck is None:
            return {"path": None, "step": 0}
        state = json.loads((ck / "state.json").read_text())
        if state["step"] > cfg.total_steps:
            raise CheckpointMismatchError(f"{ck}: step {state['step']} is past the config's {cfg.total_steps} steps")
        stage_no, stage, _ = stage_at(cfg, state["step"] - 1)
        check_resumable(state, stage_no, stage.name, {"seed": cfg.seed, **order}, str(ck))
        written = (state.get("sharded") or {}).get("world")
        if written != shards:
            was = f"sharded over {written} processes" if written else "not sharded"
            now = f"sharded over {shards} processes" if shards else "not sharded (distributed: ddp or 1 process)"
            raise CheckpointMismatchError(f"{ck}: the checkpoint is {was}, this run is {now}; resume with the "
                                          "same distributed mode and process count")
        return {"path": str(ck), "step": state["step"]}
    except ValueError as e:
        return {"error": f"{type(e).__name__}: {e}"}


def resume(cfg: TrainConfig, acc: Accelerator, model: torch.nn.Module, opt: torch.optim.Optimizer,
           order: dict[str, Any], out_dir: Path) -> int:
    """Restore the checkpoint process 0 chose; returns its step (0 without one). DDP: process 0 reads the files
    and broadcasts the tensors, so the other processes need not see ``output_dir``. FSDP: each process reads
    its own shards from its ``output_dir`` (the step directory process 0 named)."""
    shards = acc.num_processes if is_sharded(model) else None
    point = broadcast_json(resume_point(cfg, out_dir, order, acc.process_index, shards))
    if "error" in point:
        raise CheckpointMismatchError(point["error"].split(": ", 1)[1])
    if point["path"] is None:
        return 0
    path = out_dir / "checkpoints" / Path(point["path"]).name
    main = acc.is_main_process
    if is_sharded(model):
        if not all_true(all((path / shard_name(kind, acc.process_index, acc.num_processes)).is_file()
                            for kind in ("trainable", "optimizer"))):
            raise CheckpointMismatchError(f"{path}: a process lacks its shards of this sharded checkpoint (FSDP "
                                          "shards live in each process's own output_dir)")
        state = broadcast_json(json.loads((path / "state.json").read_text()) if main else None)
        rng = broadcast_tensors({"rng": read_rng(path)} if main else None)["rng"]
        local = CheckpointData(state, *read_shards(path, acc.process_index, acc.num_processes), rng)
    else:
        ck = read_checkpoint(path) if main else None
        local = CheckpointData(broadcast_json(ck.state if main else None), broadcast_tensors(ck.params if main else None),
                               broadcast_tensors(ck.opt_tensors if main else None),
                               broadcast_tensors({"rng": ck.rng_torch} if main else None)["rng"])
    apply_checkpoint(local, model, opt, str(path))
    logger.info("resuming from %s at step %d", path, point["step"])
    return int(point["step"])


def micro_shard(j: int, rank: int, world: int, accum: int) -> tuple[int, int]:
    """(shard, shards) of micro-step j on process ``rank``: the step's global batch (batch_size x grad_accum
    rows, one noise draw) is split into grad_accum x world shards, rows ``shard::shards``; with grad_accum 1
    this is ``rank::world`` as without accumulation."""
    return j * world + rank, accum * world


def train(cfg: TrainConfig, stop_at: int | None = None, model: DreamOTrainModel | None = None,
          export: bool = True) -> TrainResult:
    """Run (or resume) training. ``stop_at`` ends the run after that global step without a final checkpoint
    (tests use it to simulate a killed run). Datasets are checked before the model loads (DatasetError).
    ``model``: a prepared model instead of ``build_model(cfg.model)`` (subject tuning: base merged, tables frozen;
    only its parameters that require grad train); ``export=False`` skips ``dreamo_trained.safetensors``."""
    check_paths(cfg)
    k = cfg.grad_accum
    acc = make_accelerator("bf16" if cfg.model.uses_bf16 else "no", k)
    world, rank = acc.num_processes, acc.process_index
    out_dir, log_path = Path(cfg.output_dir), Path(cfg.output_dir) / LOSS_LOG
    groups = {name: read_metadata(path, cfg.data.buckets, cfg.data.ref_res, cfg.data.on_bad_row)
              for name, path in cfg.data.datasets.items()}
    order = data_order(cfg, groups)
    model = (build_model(cfg.model) if model is None else model).to(acc.device)
    layers = select_layers(model.transformer, cfg.loss.route_layers)
    fsdp = cfg.distributed == "fsdp" and world > 1
    if fsdp:
        shard_model(model, acc.device, cfg.model.uses_bf16)
        if isinstance(model.text_encoder, CachedTextEncoder):
            model.text_encoder.collective = True  # T5 calls are collectives now
    trainables = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainables, lr=cfg.stages[0].lr, weight_decay=cfg.weight_decay)
    sampler = BatchSampler(groups, cfg.data.batch_size * k, cfg.data.plain_caption_prob, cfg.seed)
    codec = make_codec(cfg.model.codec, cfg.model.vae_path, acc.device)
    start = resume(cfg, acc, model, opt, order, out_dir)
    if acc.is_main_process and cfg.log_every:
        out_dir.mkdir(parents=True, exist_ok=True)
        trim_loss_log(log_path, start)
    if fsdp:
        ddp_model, opt = model, acc.prepare(opt)  # FSDP2 already shards; Accelerate would wrap DDP around it
    else:
        ddp_model, opt = acc.prepare(model, opt)
    history: dict[str, list[float]] = {key: [] for key in LOSS_TERMS}
    end = cfg.total_steps if stop_at is None else min(stop_at, cfg.total_steps)
    bar = tqdm(range(start, end), disable=not (acc.is_local_main_process and cfg.progress), desc="DreamO")
    for step in bar:
        done = step + 1
        stage_no, stage, in_stage = stage_at(cfg, step)
        lr = learning_rate(stage, in_stage)
        for group in opt.param_groups:
            group["lr"] = lr
        mixture = stage.mixture or {n: 1.0 for n in groups}
        means = dict.fromkeys(LOSS_TERMS, 0.0)
        local = dict.fromkeys(LOSS_TERMS, 0.0)
        for j in range(k):
            shard, shards = micro_shard(j, rank, world, k)
            batch = make_batch(sampler.plan(step, mixture, shard, shards), codec, cfg.data.ref_res,
                               stage.ref_token_drop, acc.device)
            noise, t = step_noise(cfg, step, tuple(batch.latents.shape), shard, shards)
            with grad_sync(acc, ddp_model) as sync:
                assert sync == (j == k - 1), "gradient accumulation out of step with Accelerate's counter"
                with acc.autocast():
                    losses = compute_losses(ddp_model, batch, cfg, noise.to(acc.device), t.to(acc.device), layers)
                micro = reduced_losses(acc, losses, done, stage.name)  # before backward: all processes stop together
                acc.backward(losses["loss"])  # divided by grad_accum
            for key in LOSS_TERMS:
                means[key] += micro[key] / k
                local[key] += float(losses[key].detach()) / k
        if cfg.max_grad_norm > 0:
            if fsdp:
                norm = torch.nn.utils.clip_grad_norm_(trainables, cfg.max_grad_norm)
                norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
            else:
                norm = acc.clip_grad_norm_(trainables, cfg.max_grad_norm)
            check_grad_norm(norm, done, stage.name)
        opt.step()
        opt.zero_grad(set_to_none=True)
        for key in history:
            history[key].append(local[key])
        bar.set_postfix(stage=stage.name, loss=f"{means['loss']:.4f}", route=f"{means['route']:.3f}")
        if acc.is_main_process and cfg.log_every and done % cfg.log_every == 0:
            log_losses(log_path, {"step": done, "stage": stage.name, "lr": lr, **means})
        if done % cfg.checkpoint_every == 0 or done == cfg.total_steps:
            if fsdp:
                save_sharded_checkpoint(out_dir, done, stage_no, model, opt, cfg.seed, rank, world,
                                        acc.wait_for_everyone, order, stage.name)
            elif acc.is_main_process:
                save_checkpoint(out_dir, done, stage_no, model, opt, cfg.seed, order, stage.name)
            if acc.is_main_process:
                prune_checkpoints(out_dir, cfg.keep_checkpoints)
            acc.wait_for_everyone()
        if cfg.sample_every and done % cfg.sample_every == 0 and (acc.is_main_process or fsdp):
            with acc.autocast():  # a bf16 base samples under the training's autocast
                save_samples(model, codec, batch, out_dir / "samples" / f"step_{done:08d}.png", acc.is_main_process)
    if export and end == cfg.total_steps:
        params = trainable_state(model) if fsdp else None  # gathered on every process (a collective)
        if acc.is_main_process:
            path = export_dreamo(model, out_dir / "dreamo_trained.safetensors",
                                 torch.bfloat16 if cfg.model.uses_bf16 else torch.float32, params)
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
    except (DatasetError, CheckpointMismatchError) as e:
        return fail(e, 2)
    except NonFiniteLossError as e:
        return fail(e, 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
