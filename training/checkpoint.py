"""Atomic, pickle-free checkpoints: a directory written under a temporary name, then ``os.replace``-d into
place, then the ``latest`` pointer file replaced atomically. A run killed at any moment leaves the previous
checkpoint intact and ``latest`` pointing at a complete directory.

Contents of ``checkpoints/step_XXXXXXXX/``: ``trainable.safetensors`` (LoRA A/B and the three tables, by
parameter name), ``optimizer.safetensors`` (every optimizer state tensor as ``state.{param}.{name}``),
``state.json`` (step, stage and its name, optimizer param groups and scalar state, python / numpy RNG states,
data order), ``rng_torch.safetensors`` (the torch CPU RNG state). The LR schedule is a pure function of (stage,
step), and the data order and noise are pure functions of (seed, step, batch layout), so the step restores them
exactly. ``data_order`` records what the order depends on (seed, batch size, grad_accum, dataset sizes, buckets,
plain-caption probability); ``check_resumable`` refuses a config that would continue with another order or stage.

Sharded (``distributed: fsdp``): every process writes its own shards, ``trainable.shard-R-of-W.safetensors`` and
``optimizer.shard-R-of-W.safetensors`` (the local pieces of the FSDP2 DTensors, each file written atomically),
into the step directory; after a barrier process 0 writes ``state.json`` (the completeness mark) and ``latest``.
A sharded checkpoint resumes on the same number of processes (checked).

``prune_checkpoints`` keeps the newest N step directories (never the one ``latest`` names): each older one is
renamed to a hidden name first, then deleted, so a kill mid-delete never leaves a half checkpoint under a
``step_*`` name.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

LATEST = "latest"


class CheckpointMismatchError(ValueError):
    """The checkpoint to resume was written by a run with another stage plan, data order or process count."""


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """The process-local piece of a DTensor (FSDP2 shard), or ``t`` itself."""
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """{name: tensor} of the parameters that require grad (LoRA + tables), detached, contiguous; FSDP2 shards
    are gathered (a collective: call it on every process)."""
    from torch.distributed.tensor import DTensor

    def full(p: torch.Tensor) -> torch.Tensor:
        return p.detach().full_tensor() if isinstance(p, DTensor) else p.detach()

    return {n: full(p).contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def local_trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """{name: this process's shard} of the trainable parameters (the whole tensor when not sharded)."""
    return {n: local_tensor(p.detach()).contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def shard_name(kind: str, rank: int, world: int) -> str:
    return f"{kind}.shard-{rank:05d}-of-{world:05d}.safetensors"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then ``os.replace`` it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _optimizer_parts(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{idx}.{k}"] = local_tensor(v.detach()).contiguous().cpu()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _state_json(step: int, stage: int, opt_json: dict[str, Any], seed: int, data_order: dict[str, Any] | None,
                stage_name: str | None, world: int | None) -> str:
    np_state = np.random.get_state()
    state = {
        "step": step, "stage": stage, "stage_name": stage_name, "optimizer": opt_json,
        "rng_python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "data_order": {"seed": seed, **(data_order or {}), "next_step": step},
    }
    if world is not None:
        state["sharded"] = {"world": world}
    return json.dumps(state)


def save_file_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def save_sharded_checkpoint(root: str | Path, step: int, stage: int, model: nn.Module, opt: torch.optim.Optimizer,
                            seed: int, rank: int, world: int, barrier: Any, data_order: dict[str, Any] | None = None,
                            stage_name: str | None = None) -> Path:
    """Every process calls this: its shards into ``root/checkpoints/step_{step}``, then (after ``barrier()``)
    process 0 writes ``state.json`` and ``latest``. Returns the directory."""
    final = Path(root) / "checkpoints" / f"step_{step:08d}"
    final.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (final / "state.json").unlink(missing_ok=True)  # a re-run reaching this step: incomplete until rewritten
    barrier()
    save_file_atomic(local_trainable_state(model), final / shard_name("trainable", rank, world))
    opt_tensors, opt_json = _optimizer_parts(opt)
    save_file_atomic(opt_tensors, final / shard_name("optimizer", rank, world))
    barrier()
    if rank == 0:
        save_file({"state": torch.get_rng_state()}, str(final / "rng_torch.safetensors"))
        write_text_atomic(final / "state.json", _state_json(step, stage, opt_json, seed, data_order, stage_name, world))
        write_text_atomic(final.parent / LATEST, final.name)
    barrier()
    return final


def save_checkpoint(root: str | Path, step: int, stage: int, model: nn.Module, opt: torch.optim.Optimizer, seed: int,
                    data_order: dict[str, Any] | None = None, stage_name: str | None = None) -> Path:
    """Write ``root/checkpoints/step_{step}`` atomically and point ``latest`` at it. Returns the directory."""
    ck_root = Path(root) / "checkpoints"
    ck_root.mkdir(parents=True, exist_ok=True)
    final = ck_root / f"step_{step:08d}"
    tmp = ck_root / f".tmp_step_{step:08d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    opt_tensors, opt_json = _optimizer_parts(opt)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    save_file({"state": torch.get_rng_state()}, str(tmp / "rng_torch.safetensors"))
    write_text_atomic(tmp / "state.json", _state_json(step, stage, opt_json, seed, data_order, stage_name, None))
    if final.exists():  # a re-run reaching the same step: replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(ck_root / LATEST, final.name)
    return final


def prune_checkpoints(root: str | Path, keep: int | None) -> list[Path]:
    """Delete all but the newest ``keep`` ``step_*`` directories (0 / None: keep all); returns the deleted ones."""
    ck_root = Path(root) / "checkpoints"
    if not keep or not ck_root.is_dir():
        return []
    pointer = ck_root / LATEST
    latest = pointer.read_text().strip() if pointer.is_file() else None
    steps = sorted((p for p in ck_root.glob("step_*") if p.is_dir() and p.name[5:].isdigit()),
                   key=lambda p: int(p.name[5:]))
    old = [p for p in steps[:-keep] if p.name != latest]
    for path in old:
        doomed = ck_root / f".del_{path.name}_{os.getpid()}"
        os.replace(path, doomed)
        shutil.rmtree(doomed)
    return old


def latest_checkpoint(root: str | Path) -> Path | None:
    """The directory ``latest`` points at, or None when there is none yet."""
    pointer = Path(root) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not (path / "state.json").is_file():
        raise ValueError(f"{pointer}: points at {path.name}, which is not a complete checkpoint")
    return path


@dataclass
class CheckpointData:
    """A checkpoint read into memory: state.json, trainable tensors, optimizer tensors, torch RNG state."""

    state: dict[str, Any]
    params: dict[str, torch.Tensor]
    opt_tensors: dict[str, torch.Tensor]
    rng_torch: torch.Tensor


def read_rng(path: Path) -> torch.Tensor:
    """The torch CPU RNG state of a checkpoint."""
    return load_file(str(path / "rng_torch.safetensors"))["state"]


def read_shards(path: Path, rank: int, world: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(trainable, optimizer) tensors of process ``rank``'s shards of a sharded checkpoint."""
    return (load_file(str(path / shard_name("trainable", rank, world))),
            load_file(str(path / shard_name("optimizer", rank, world))))


def read_checkpoint(path: Path) -> CheckpointData:
    """Read an unsharded checkpoint directory into memory."""
    state = json.loads((path / "state.json").read_text())
    if state.get("sharded"):
        raise CheckpointMismatchError(f"{path}: a sharded (FSDP) checkpoint; it resumes under distributed: fsdp "
                                      f"on {state['sharded']['world']} processes")
    return CheckpointData(state, load_file(str(path / "trainable.safetensors")),
                          load_file(str(path / "optimizer.safetensors")), read_rng(path))


def apply_checkpoint(data: CheckpointData, model: nn.Module, opt: torch.optim.Optimizer, where: str = "") -> None:
    """Restore parameters (the local shard of FSDP2 DTensors), optimizer and RNG states in place."""
    from torch.distributed.tensor import DTensor

    named = dict(model.named_parameters())
    missing = sorted(set(n for n, p in named.items() if p.requires_grad) - set(data.params))
    if missing:
        raise ValueError(f"{where}: checkpoint lacks trainable parameters {missing[:3]} (different model config?)")
    with torch.no_grad():
        for n, t in data.params.items():
            local_tensor(named[n]).copy_(t)
    params = [p for group in opt.param_groups for p in group["params"]]
    opt_state: dict[int, dict[str, Any]] = {}
    for key, t in data.opt_tensors.items():
        _, idx, name = key.split(".", 2)
        p = params[int(idx)]
        if isinstance(p, DTensor) and t.shape == p.to_local().shape and t.ndim:  # exp_avg / exp_avg_sq shards
            t = DTensor.from_local(t.to(p.device), p.device_mesh, p.placements, run_check=False)
        opt_state.setdefault(int(idx), {})[name] = t
    for key, v in data.state["optimizer"]["scalars"].items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": opt_state, "param_groups": data.state["optimizer"]["param_groups"]})
    torch.set_rng_state(data.rng_torch)
    v, internal, gauss = data.state["rng_python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, *rest = data.state["rng_numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))


def check_resumable(state: dict[str, Any], stage: int, stage_name: str, data_order: dict[str, Any], where: str) -> None:
    """CheckpointMismatchError unless the checkpoint's stage (index and name, when recorded) is the one the config
    puts its last step in, and every recorded ``data_order`` entry equals the config's."""
    problems = []
    if state["stage"] != stage or state.get("stage_name") not in (None, stage_name):
        problems.append(f"stage: the checkpoint's step {state['step']} was in stage {state['stage']} "
                        f"{state.get('stage_name')!r}, the config puts it in stage {stage} {stage_name!r}")
    recorded = state.get("data_order", {})
    for key, want in data_order.items():
        if key in recorded and recorded[key] != want:
            problems.append(f"data_order.{key}: {recorded[key]!r} in the checkpoint, {want!r} from the config")
    if problems:
        raise CheckpointMismatchError(f"{where}: cannot resume: {'; '.join(problems)}; resuming would not continue "
                                      "the same run (use the original config, or a new output_dir)")
