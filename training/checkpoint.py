"""Atomic, pickle-free checkpoints: a directory written under a temporary name, then ``os.replace``-d into
place, then the ``latest`` pointer file replaced atomically. A run killed at any moment leaves the previous
checkpoint intact and ``latest`` pointing at a complete directory.

Contents of ``checkpoints/step_XXXXXXXX/``: ``trainable.safetensors`` (LoRA A/B and the three tables, by
parameter name), ``optimizer.safetensors`` (every optimizer state tensor as ``state.{param}.{name}``),
``state.json`` (step, stage, optimizer param groups and scalar state, python / numpy RNG states, data order),
``rng_torch.safetensors`` (the torch CPU RNG state). The LR schedule is a pure function of (stage, step), and the
data order and noise are pure functions of (seed, step), so the step restores them exactly.

``prune_checkpoints`` keeps the newest N step directories (never the one ``latest`` names): each older one is
renamed to a hidden name first, then deleted, so a kill mid-delete never leaves a half checkpoint under a
``step_*`` name.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

LATEST = "latest"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """{name: tensor} of the parameters that require grad (LoRA + tables), detached, contiguous."""
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


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
                tensors[f"state.{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_checkpoint(root: str | Path, step: int, stage: int, model: nn.Module, opt: torch.optim.Optimizer, seed: int) -> Path:
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
    np_state = np.random.get_state()
    state = {
        "step": step, "stage": stage, "optimizer": opt_json,
        "rng_python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "data_order": {"seed": seed, "next_step": step},
    }
    write_text_atomic(tmp / "state.json", json.dumps(state))
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


def load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore parameters, optimizer and RNG states in place; returns state.json (``step``, ``stage``, ...)."""
    state = json.loads((path / "state.json").read_text())
    params = load_file(str(path / "trainable.safetensors"))
    named = dict(model.named_parameters())
    missing = sorted(set(n for n, p in named.items() if p.requires_grad) - set(params))
    if missing:
        raise ValueError(f"{path}: checkpoint lacks trainable parameters {missing[:3]} (different model config?)")
    with torch.no_grad():
        for n, t in params.items():
            named[n].copy_(t)
    tensors = load_file(str(path / "optimizer.safetensors"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        _, idx, name = key.split(".", 2)
        opt_state.setdefault(int(idx), {})[name] = t
    for key, v in state["optimizer"]["scalars"].items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": opt_state, "param_groups": state["optimizer"]["param_groups"]})
    torch.set_rng_state(load_file(str(path / "rng_torch.safetensors"))["state"])
    v, internal, gauss = state["rng_python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, *rest = state["rng_numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    return state
