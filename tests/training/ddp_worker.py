"""Run by test_distributed as 2 CPU processes (torch.distributed.run), in two parts:

1. two training steps, then each process writes its trainable parameters to ``<output_dir>/rank<i>.safetensors``;
2. a fresh run (``<output_dir>/nan``) whose route loss is NaN at step 2 on rank 1 only: each process writes
   ``<output_dir>/nan/rank<i>.json`` with the error it raised and whether its parameters are still those the
   poisoned step started from. A rank that hangs writes nothing (the test's timeout catches it)."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import training.objective
from training.checkpoint import trainable_state
from training.config import load_config
from training.loop import train


def poisoned_losses(rank: int, seen: dict) -> object:
    """compute_losses whose second call has a NaN route loss on rank 1; records the parameters it started from."""
    real, calls = training.objective.compute_losses, [0]

    def losses(model: torch.nn.Module, *args: object) -> dict[str, torch.Tensor]:
        out = real(model, *args)
        if calls[0] == 1:
            seen["model"], seen["before"] = model, trainable_state(model)
            if rank == 1:
                out["route"] = out["route"] * float("nan")
                out["loss"] = out["loss"] + out["route"]
        calls[0] += 1
        return out

    return losses


def nan_run(overrides: list[str], out: Path, rank: int) -> None:
    seen: dict = {}
    training.objective.compute_losses = poisoned_losses(rank, seen)
    try:
        train(load_config(None, [*overrides, f"--output_dir={out}"]))
        report = {"error": None, "message": ""}
    except Exception as e:  # the report says which
        report = {"error": type(e).__name__, "message": str(e)}
    after = trainable_state(seen["model"])
    report["unchanged"] = all(torch.equal(after[k], seen["before"][k]) for k in after)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    cfg = load_config(None, sys.argv[1:])
    result = train(cfg, stop_at=2)
    save_file(trainable_state(result.model), str(Path(cfg.output_dir) / f"rank{result.process_index}.safetensors"))
    nan_run(sys.argv[1:], Path(cfg.output_dir) / "nan", result.process_index)
