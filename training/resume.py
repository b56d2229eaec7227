"""Where a run starts: the checkpoint process 0 chooses (``resume_point``: refused when its stage plan, data order or
sharding differ from this run's) restored on every process (``resume``); ``data_order`` is what a step's data and
noise depend on besides (seed, step), recorded in every checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import (
    CheckpointData,
    CheckpointMismatchError,
    apply_checkpoint,
    check_resumable,
    latest_checkpoint,
    read_checkpoint,
    read_rng,
    read_shards,
    shard_name,
)
from .config import TrainConfig
from .parallel import all_true, broadcast_json, broadcast_tensors, is_sharded
from .schedule import stage_at

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger("DreamO")


def data_order(cfg: TrainConfig, groups: dict[str, list]) -> dict[str, Any]:
    """What the data order and noise of a step depend on besides (seed, step); recorded in checkpoints."""
    order = {"batch_size": cfg.data.batch_size, "grad_accum": cfg.grad_accum,
             "datasets": {name: len(rows) for name, rows in sorted(groups.items())}, "buckets": cfg.data.buckets,
             "plain_caption_prob": cfg.data.plain_caption_prob, "timestep_sampling": cfg.timestep_sampling,
             "placement": cfg.data.placement}
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
