"""The distributed path: 2 CPU processes (gloo, Accelerate's MULTI_CPU) equal one process on the same global
batch after a step, and both ranks hold identical parameters. Launched with ``torch.distributed.run`` (what
``accelerate launch --multi_gpu`` runs on GPUs); accelerate's own multi-CPU launcher needs MPI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.checkpoint import trainable_state
from training.train import train

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_step_equals_single_process(overrides_for, tiny_config, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests/training/ddp_worker.py"),
           *overrides_for(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"2-process run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    single = trainable_state(train(tiny_config(tmp_path / "single"), stop_at=2).model)
    assert r0.keys() == r1.keys() == single.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # DDP keeps the replicas identical
        assert torch.allclose(r0[k], single[k], atol=1e-6, rtol=1e-5), (k, (r0[k] - single[k]).abs().max())
    start = trainable_state(train(tiny_config(tmp_path / "zero"), stop_at=0).model)
    moved = sum(not torch.equal(start[k], r0[k]) for k in r0)
    assert moved == len(r0)  # every trainable tensor took the step
