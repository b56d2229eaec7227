"""The distributed path: 2 CPU processes (gloo, Accelerate's MULTI_CPU) equal one process on the same global
batch after a step, and both ranks hold identical parameters; a NaN loss on one rank stops both ranks with the
same error before the optimizer step (no rank hangs). Launched once (``ddp_worker.py``) with
``torch.distributed.run`` (what ``accelerate launch --multi_gpu`` runs on GPUs); accelerate's own multi-CPU
launcher needs MPI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.checkpoint import trainable_state
from training.loop import train

TIMEOUT_S = 240  # the launch takes ~15 s; a hanging rank would wait for gloo's 30 min timeout


@pytest.fixture(scope="module")
def ddp_run(overrides_for, two_processes, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """(output dir, "exit N" or "timed out", output) of one 2-process launch of ddp_worker.py."""
    out = tmp_path_factory.mktemp("ddp")
    status, output = two_processes("ddp_worker.py", [*overrides_for(out), "--log_every=1"], TIMEOUT_S)
    return out, status, output[-3000:]


def test_two_process_step_equals_single_process(ddp_run, tiny_config, tmp_path: Path) -> None:
    out, status, output = ddp_run
    if not (out / "rank1.safetensors").is_file():
        pytest.fail(f"2-process run failed ({status}):\n{output}")
    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    single_run = train(tiny_config(tmp_path / "single"), stop_at=2)
    single = trainable_state(single_run.model)
    assert r0.keys() == r1.keys() == single.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # DDP keeps the replicas identical
        assert torch.allclose(r0[k], single[k], atol=1e-6, rtol=1e-5), (k, (r0[k] - single[k]).abs().max())
    start = trainable_state(train(tiny_config(tmp_path / "zero"), stop_at=0).model)
    moved = sum(not torch.equal(start[k], r0[k]) for k in r0)
    assert moved == len(r0)  # every trainable tensor took the step
    log = [json.loads(line) for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]  # process 0 alone writes the log
    for r in log:  # the mean over the 2 processes is the loss of the global batch
        for k in ("loss", "diff", "route", "holder"):
            assert r[k] == pytest.approx(single_run.history[k][r["step"] - 1], rel=1e-5, abs=1e-7), (r, k)


def test_nan_on_one_rank_stops_every_rank_before_the_step(ddp_run) -> None:
    out, status, output = ddp_run
    assert status == "exit 0", f"{status}:\n{output}"  # no rank hung, none crashed
    reports = [json.loads((out / "nan" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["error"] for r in reports] == ["NonFiniteLossError"] * 2, reports
    assert reports[0]["message"] == reports[1]["message"]  # the same decision and words on every rank
    assert "step 2 (stage 's1')" in reports[0]["message"]
    assert "route (on 1 of 2 processes)" in reports[0]["message"]
    assert "stopped before the optimizer step" in reports[0]["message"]
    assert all(r["unchanged"] for r in reports), reports  # no optimizer step with the NaN gradients, on either rank
