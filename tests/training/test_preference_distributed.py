"""The preference stage on 2 CPU processes (gloo), one launch of ``preference_worker.py``: DDP equals one process on
the same global batch (the loss log is the global mean), FSDP2 with gradient accumulation equals one process and
exports the LoRA gathered from its shards (each process holding half of it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.checkpoint import trainable_state
from training.preference.config import load_preference_config
from training.preference.stage import train_preference

TIMEOUT_S = 300  # the launch takes ~30 s on 2 cores; a hanging rank would wait for gloo's 30 min timeout


@pytest.fixture(scope="module")
def launched(pair_overrides_for, two_processes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pref_2proc")
    status, output = two_processes("preference_worker.py", pair_overrides_for(out), TIMEOUT_S)
    if status != "exit 0":
        pytest.fail(f"2-process preference launch failed ({status}):\n{output}")
    return out


@pytest.fixture(scope="module")
def single(pair_overrides_for, tmp_path_factory: pytest.TempPathFactory):
    """One process, batch 4, no accumulation, the whole run: the reference."""
    return train_preference(load_preference_config(None, pair_overrides_for(tmp_path_factory.mktemp("pref_1proc"))))


def assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], atol: float) -> None:
    assert got.keys() == want.keys() and len(got) > 3
    for k in want:
        assert torch.allclose(got[k], want[k], atol=atol, rtol=1e-5), (k, (got[k] - want[k]).abs().max())


def test_ddp_equals_one_process(launched: Path, pair_overrides_for, tmp_path: Path) -> None:
    r0, r1 = (load_file(str(launched / "ddp" / f"rank{r}.safetensors")) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # DDP keeps the replicas identical
    one = train_preference(load_preference_config(None, pair_overrides_for(tmp_path / "one")), stop_at=2)
    assert_close(r0, trainable_state(one.model), 1e-6)
    log = [json.loads(line) for line in (launched / "ddp" / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]  # process 0 alone writes it: the mean over the 2 processes
    for r in log:
        for k in ("loss", "accuracy", "anchor"):
            assert r[k] == pytest.approx(one.history[k][r["step"] - 1], rel=1e-5, abs=1e-7), (r, k)
        # the margin is β/2 (100) x a difference of errors: a batch-size-dependent rounding of 1e-7 shows as 1e-5
        assert r["margin"] == pytest.approx(one.history["margin"][r["step"] - 1], abs=2e-5)
        assert r["margin"] != 0.0 or r["step"] == 1


def test_fsdp_with_accumulation_equals_one_process_and_exports_from_the_shards(launched: Path, single) -> None:
    got = load_file(str(launched / "fsdp" / "params.safetensors"))
    # FSDP2 (2 processes, batch 2 x grad_accum 2) vs 1 process batch 4: same pairs and noise, sums in another order
    assert_close(got, trainable_state(single.model), 1e-5)
    exported, want = load_file(str(launched / "fsdp" / "preference_lora.safetensors")), load_file(str(single.lora))
    assert_close(exported, want, 1e-5)
    reports = [json.loads((launched / "fsdp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["exported"] for r in reports] == [True, False]  # process 0 writes the file
    full = {k: v.numel() for k, v in got.items()}
    for k, n in full.items():  # each process held half of every LoRA tensor (dim 0 split in two)
        assert reports[0]["local"][k] + reports[1]["local"][k] == n and reports[0]["local"][k] < n, k
    assert len(reports[0]["history"]["loss"]) == 4 and reports[0]["history"]["accuracy"][0] == 0.5
