"""One row per bad input: the exception class or exit code and the words that make the message clear are
checked, then the next good action must be unaffected: after a row check, a good dataset's check gives the
reference rows; after a CLI or training case, a good tiny run through the CLI ends with exit 0 and the reference
parameters (the bad case left nothing behind that changes the next run)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import training.objective
from training.checkpoint import trainable_state
from training.config import load_config
from training.data import read_metadata
from training.loop import train
from training.model import build_model
from training.step_losses import NonFiniteLossError
from training.train import main

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Ctx:
    """What a case may use: a fresh folder, the session's good datasets and the tiny-run overrides."""

    tmp: Path
    datasets: dict[str, Path]
    overrides: Callable[[Path], list[str]]

    @property
    def good_yaml(self) -> Path:
        path = self.tmp / "good.yaml"
        path.write_text("seed: 0\nprogress: false\n")
        return path


@dataclass(frozen=True)
class Outcome:
    kind: str  # an exception class name, "exit N" or "read N rows"
    text: str  # the message, or stdout + stderr


def broken(ctx: Ctx, edit: Callable[[Path, list[dict]], None]) -> Path:
    """A copy of the good subject set (12 rows, 64x64 targets) with ``edit(folder, rows)`` applied."""
    folder = ctx.tmp / "broken"
    shutil.copytree(ctx.datasets["subject"], folder)
    edit(folder, [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()])
    return folder


def truncate_target(folder: Path, rows: list[dict]) -> None:
    path = folder / rows[0]["target"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # header intact: PIL.open alone passes


def text_reference(folder: Path, rows: list[dict]) -> None:
    (folder / rows[1]["references"][0]["image"]).write_text("a text file named .png\n")


def text_mask(folder: Path, rows: list[dict]) -> None:
    (folder / rows[2]["references"][0]["mask"]).write_text("a text file named .png\n")


def small_mask(folder: Path, rows: list[dict]) -> None:
    Image.new("L", (32, 48), 255).save(folder / rows[0]["references"][0]["mask"])


def all_targets_missing(folder: Path, rows: list[dict]) -> None:
    lines = [json.dumps(dict(r, target="targets/missing.png")) for r in rows]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")


def read(mode: str, edit: Callable[[Path, list[dict]], None]) -> Callable[[Ctx], Outcome]:
    """Check the broken copy's rows; the outcome is the exception, or the rows read and the warnings logged."""

    def run(ctx: Ctx) -> Outcome:
        folder = broken(ctx, edit)
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger("DreamO").addHandler(handler)
        try:
            rows = read_metadata(folder, [[64, 64]], 32, mode)
        except Exception as e:  # the class is what the row checks
            return Outcome(type(e).__name__, str(e))
        finally:
            logging.getLogger("DreamO").removeHandler(handler)
        return Outcome(f"read {len(rows)} rows", "\n".join(records))

    return run


def cli(argv: Callable[[Ctx], list[str]]) -> Callable[[Ctx], Outcome]:
    """``training.train.main(argv)`` in this process; the outcome is its exit code and output."""

    def run(ctx: Ctx) -> Outcome:
        args = argv(ctx)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
        return Outcome(f"exit {code}", out.getvalue() + err.getvalue())

    return run


def cli_on(edit: Callable[[Path, list[dict]], None], mode: str) -> Callable[[Ctx], Outcome]:
    """The CLI on a broken copy of the subject set (the only dataset, with ``on_bad_row: mode``)."""

    def argv(ctx: Ctx) -> list[str]:
        folder = broken(ctx, edit)
        return [str(ctx.good_yaml), *ctx.overrides(ctx.tmp / "run"), f"--data.datasets={{subject: '{folder}'}}",
                "--stages=[{name: s1, steps: 2, mixture: {subject: 1.0}}]", f"--data.on_bad_row={mode}"]

    return cli(argv)


def module_cli(args: list[str]) -> Callable[[Ctx], Outcome]:
    """``python -m training.train ARGS`` as a real process (the entry point, not only ``main``)."""

    def run(ctx: Ctx) -> Outcome:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, "-m", "training.train", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        return Outcome(f"exit {proc.returncode}", proc.stdout + proc.stderr)

    return run


def write(name: str, text: str) -> Callable[[Ctx], str]:
    def path(ctx: Ctx) -> str:
        (ctx.tmp / name).write_text(text)
        return str(ctx.tmp / name)

    return path


BAD_YAML = write("bad.yaml", "model:\n  lora_rank: [4\nseed: 0\n")


def with_good(extra: Callable[[Ctx], list[str]]) -> Callable[[Ctx], list[str]]:
    return lambda ctx: [str(ctx.good_yaml), *ctx.overrides(ctx.tmp / "run"), *extra(ctx)]


class InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient: a finite loss whose backward blows up."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


class Poisoned:
    """``compute_losses`` that, at its ``at``-th call (0-based), makes ``term`` NaN (``"inf_grad"``: the gradient
    infinite) and records the trainable parameters of that moment (after the previous optimizer step)."""

    def __init__(self, at: int, term: str):
        self.real, self.at, self.term, self.calls = training.objective.compute_losses, at, term, 0
        self.model: torch.nn.Module | None = None
        self.before: dict[str, torch.Tensor] = {}

    def __call__(self, model: torch.nn.Module, *args: object) -> dict[str, torch.Tensor]:
        out = self.real(model, *args)
        if self.calls == self.at:
            self.model, self.before = model, trainable_state(model)
            if self.term == "inf_grad":
                out["loss"] = InfGrad.apply(out["loss"])
            else:
                out[self.term] = out[self.term] * float("nan")
                out["loss"] = out["loss"] + out[self.term]
        self.calls += 1
        return out


def poisoned(at: int, term: str, run: Callable[[Ctx], Outcome]) -> Callable[[Ctx], Outcome]:
    """``run`` with ``compute_losses`` poisoned (undone before the good run)."""

    def wrapped(ctx: Ctx) -> Outcome:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(training.objective, "compute_losses", Poisoned(at, term))
            return run(ctx)

    return wrapped


def training_run(ctx: Ctx) -> Outcome:
    """``train`` on the tiny config; the outcome is the exception or the number of steps taken."""
    try:
        result = train(load_config(None, ctx.overrides(ctx.tmp / "run")))
    except Exception as e:  # the class is what the row checks
        return Outcome(type(e).__name__, str(e))
    return Outcome(f"trained {len(result.history['loss'])} steps", "")


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Ctx], Outcome]
    kind: str
    words: tuple[str, ...]
    then: str = "run"  # the good action afterwards: "run" (a tiny CLI training run) or "check" (a row check)


CASES = [
    Case("truncated png", read("stop", truncate_target), "DatasetError",
         ("metadata.jsonl:1: bad row", "target 'targets/00000.png'", "does not decode", "truncated"), "check"),
    Case("text as png (reference)", read("stop", text_reference), "DatasetError",
         ("metadata.jsonl:2: bad row", "references[0] image 'refs/00001_1.png'", "does not decode"), "check"),
    Case("text as png (mask)", read("stop", text_mask), "DatasetError",
         ("metadata.jsonl:3: bad row", "references[0] mask 'masks/00002_1.png'", "does not decode"), "check"),
    Case("mask size mismatch", read("stop", small_mask), "DatasetError",
         ("metadata.jsonl:1: bad row", "mask 'masks/00000_1.png'", "is 32x48", "target is 64x64"), "check"),
    Case("truncated png, skip", read("skip", truncate_target), "read 11 rows",
         ("metadata.jsonl:1: skipping bad row", "targets/00000.png", "does not decode", "skipped 1 of 12 rows"),
         "check"),
    Case("mask size mismatch, skip", read("skip", small_mask), "read 11 rows",
         ("metadata.jsonl:1: skipping bad row", "masks/00000_1.png", "32x48"), "check"),
    Case("bad row, CLI", cli_on(truncate_target, "stop"), "exit 2",
         ("training.train: error:", "metadata.jsonl:1: bad row", "does not decode")),
    Case("no usable rows, CLI", cli_on(all_targets_missing, "skip"), "exit 2",
         ("training.train: error:", "no usable rows", "all 12 row(s) are bad")),
    Case("no config", cli(lambda ctx: []), "exit 2",
         ("usage: python -m training.train CONFIG.yaml", "no config file")),
    Case("overrides, no config", cli(lambda ctx: ["--seed=1"]), "exit 2", ("usage:", "no config file given")),
    Case("no config, python -m", module_cli([]), "exit 2", ("usage: python -m training.train", "no config file"),
         "check"),  # another process: this one has nothing to be affected
    Case("--help", cli(lambda ctx: ["--help"]), "exit 0",
         ("usage: python -m training.train", "Exit codes", "loss_log.jsonl", "keep_checkpoints")),
    Case("-h after a config", cli(lambda ctx: [str(ctx.good_yaml), "-h"]), "exit 0", ("usage:", "Exit codes")),
    Case("bad yaml", cli(lambda ctx: [BAD_YAML(ctx)]), "exit 2", ("bad.yaml: not valid YAML", "line 3")),
    Case("config file missing", cli(lambda ctx: [str(ctx.tmp / "nope.yaml")]), "exit 2",
         ("config file not found", "nope.yaml")),
    Case("missing FLUX transformer", cli(with_good(lambda ctx: [
        f"--model.pretrained={ctx.tmp / 'FLUX.1-dev' / 'transformer'}", f"--model.text_encoder={ctx.tmp}"])),
         "exit 2", ("config model.pretrained:", "FLUX.1-dev/transformer is not a folder", "FluxTransformer2DModel")),
    Case("missing FLUX text encoder", cli(with_good(lambda ctx: [f"--model.text_encoder={ctx.tmp / 'FLUX.1-dev'}"])),
         "exit 2", ("config model.text_encoder:", "FLUX.1-dev is not a folder")),
    Case("bad override", cli(with_good(lambda ctx: ["--stages.5.lr=1"])), "exit 2",
         ("override '--stages.5.lr=1'", "no such key path")),
    Case("NaN loss term", poisoned(1, "route", training_run), "NonFiniteLossError",
         ("step 2 (stage 's1')", "non-finite loss term(s): loss (on 1 of 1 process), route (on 1 of 1 process)",
          "stopped before the optimizer step")),
    Case("NaN loss term, CLI", poisoned(0, "holder", cli(with_good(lambda ctx: []))), "exit 1",
         ("training.train: error: step 1 (stage 's1')", "holder (on 1 of 1 process)")),
    Case("infinite gradient", poisoned(0, "inf_grad", training_run), "NonFiniteLossError",
         ("step 1 (stage 's1')", "gradient norm is", "loss terms are finite", "stopped before the optimizer step")),
]

REFERENCE: dict[str, object] = {}
GOOD = ["--stages=[{name: s1, steps: 1, lr: 0.002, mixture: {subject: 1.0}}]"]  # one step, checkpoint, export


def trainable_of(run: Path) -> dict[str, torch.Tensor]:
    latest = (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run / "checkpoints" / latest / "trainable.safetensors"))


def good_action(then: str, ctx: Ctx) -> object:
    """The rows of a good row check, or the trainable parameters after a good CLI run (which must exit 0)."""
    if then == "check":
        return read_metadata(ctx.datasets["subject"], [[64, 64]], 32, "stop")
    run = ctx.tmp / f"good_{len(list(ctx.tmp.glob('good_*')))}"
    good = cli(lambda ctx: [str(ctx.good_yaml), *ctx.overrides(run), *GOOD])(ctx)
    assert good.kind == "exit 0", good
    return trainable_of(run)


def same(a: object, b: object) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # type: ignore[union-attr]
    return a == b


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, dataset_dirs: dict[str, Path], overrides_for, tmp_path: Path) -> None:
    ctx = Ctx(tmp_path, dataset_dirs, overrides_for)
    if case.then not in REFERENCE:
        REFERENCE[case.then] = good_action(case.then, ctx)
    outcome = case.run(ctx)
    assert outcome.kind == case.kind, outcome
    for word in case.words:
        assert word in outcome.text, (word, outcome.text)
    assert "Traceback" not in outcome.text
    if outcome.kind == "exit 2":  # exactly one error line
        assert sum(line.startswith("training.train: error:") for line in outcome.text.splitlines()) == 1, outcome
    assert same(good_action(case.then, ctx), REFERENCE[case.then])  # the next good action is unaffected


@pytest.mark.parametrize("term", ["route", "inf_grad"])
def test_non_finite_step_leaves_the_parameters_unchanged(term: str, overrides_for, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    poison = Poisoned(1, term)
    monkeypatch.setattr(training.objective, "compute_losses", poison)
    with pytest.raises(FloatingPointError) as info:
        train(load_config(None, overrides_for(tmp_path / "run")))
    assert poison.model is not None and poison.calls == 2  # it stopped at the poisoned step
    after = trainable_state(poison.model)
    assert after.keys() == poison.before.keys() and len(after) > 3
    for k in after:
        assert torch.equal(after[k], poison.before[k]), k  # no optimizer step with the poisoned gradients
    assert info.type is NonFiniteLossError and str(info.value).startswith("step 2 "), info.value
    initial = trainable_state(build_model(load_config(None, overrides_for(tmp_path)).model))
    assert any(not torch.equal(after[k], initial[k]) for k in after)  # the good step did train
