"""The toy DreamO, end to end on a CPU: ``python -m training.demo [--out runs/demo]``.

1. writes the toy world's training sets (``training.toy.datasets``: 1 or 2 subjects = shape x colour x pattern on
   random backgrounds, references on white, exact masks, ``[ref#i]`` captions; six subjects held out);
2. trains the toy base from scratch (``training.toy.base``: a tiny FLUX text-to-image model, every weight) unless
   ``--base`` names one (e.g. the repo's ``models/toy/base``);
3. trains DreamO on the frozen base twice with the real trainer (``training.loop``: LoRA on the official targets
   + tables + placeholder rows; flow matching + L_route + L_holder; three stages), identical except λ_route
   (0.1 vs 0), each exported in the official DreamO file format (``dreamo_trained.safetensors``);
4. measures on held-out subjects, with the trainer's sampler (the generator's schedule and noise): subject fidelity
   (one reference), attribute binding (two), the text-only baseline, with Wilson 95% intervals over cases x seeds,
   and the paired bootstrap interval of binding with minus without L_route; and the ceiling: the frozen base
   alone told the subjects in words (held-out and training subjects), with its curve over the base's training;
5. writes ``grid.png`` (references -> with L_route | without | text only), ``metrics.json`` and ``metrics.md``
   (the same text as printed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..config import load_config
from ..loop import train
from .base import snapshot_dir, toy_model_overrides, train_base
from .constants import LORA_RANK, REF_SIZE, SAMPLE_STEPS, TARGET_SIZE
from .datasets import eval_cases, write_toy_datasets
from .evaluation import generate, load_base_model, routing_mass, sample_scores
from .generate import load_trainer_model
from .metrics import bootstrap_difference
from .report import (
    CURVE_METRICS,
    GRID_TILE,
    PAIRED,
    DemoEvaluation,
    metrics_markdown,
    metrics_summary,
    tile,
    write_grid,
)
from .world import TRAIN_SUBJECTS

RUNS = (("with L_route", 0.1), ("without L_route", 0.0))  # λ 1 overwhelms the flow loss here (training/README)
RUN_NAMES = (RUNS[0][0], RUNS[1][0])
BASE_ROW = "toy base alone"
ROWS = (  # (table label, results key, mode)
    ("with L_route (λ 0.1)", RUNS[0][0], "refs"),
    ("without L_route", RUNS[1][0], "refs"),
    ("text only, no references", RUNS[0][0], "text_only"),
    ("toy base alone, held-out subjects in words", BASE_ROW, "held_out"),
    ("toy base alone, training subjects in words (the ceiling)", BASE_ROW, "training"),
)


def dreamo_overrides(out: Path, data: dict[str, Path], base: Path, steps: int, route: float,
                     checkpoint_every: int = 0) -> list[str]:
    """The trainer config of one toy DreamO run: 20% subject warm-up, 70% all data, 10% self-reference quality
    stage with 95% reference-token drop (the paper's three stages, scaled down)."""
    s1, s3 = steps // 5, steps // 10
    sets = ", ".join(f"{k}: '{v}'" for k, v in data.items())
    return [
        f"--output_dir={out}", f"--data.datasets={{{sets}}}", f"--data.buckets=[[{TARGET_SIZE}, {TARGET_SIZE}]]",
        f"--data.ref_res={REF_SIZE}",
        "--data.batch_size=8", *toy_model_overrides(base), "--timestep_sampling=uniform",
        f"--model.lora_rank={LORA_RANK}",
        f"--loss.route={route}", "--loss.holder=0.5", f"--checkpoint_every={checkpoint_every or steps}",
        f"--keep_checkpoints={0 if checkpoint_every else 1}",
        "--progress=false", "--log_every=25",
        f"--stages=[{{name: subject, steps: {s1}, lr: 0.001, warmup: 20, mixture: {{single: 1.0}}}}, "
        f"{{name: all, steps: {steps - s1 - s3}, lr: 0.001, mixture: {{single: 0.4, multi: 0.6}}}}, "
        f"{{name: quality, steps: {s3}, lr: 0.0003, mixture: {{self: 1.0}}, ref_token_drop: 0.95}}]",
    ]


def run_dir(out: Path, name: str) -> Path:
    """Where DreamO run ``name`` writes (``with_L_route``, ``without_L_route``)."""
    return out / name.replace(" ", "_")


def grid_rows(models: dict, single: list, pairs: list, steps: int, n: int) -> list[list[np.ndarray]]:
    """Per case: reference(s) | with L_route | without L_route | text only (seed 0, the first ``n`` cases)."""
    rows = []
    blank = np.full((GRID_TILE, GRID_TILE, 3), 255, np.uint8)
    for cases in (single[:n], pairs[:n]):
        gens = {name: generate(m, cases, "refs", 0, steps) for name, m in models.items()}
        base = generate(models[RUNS[0][0]], cases, "text_only", 0, steps)
        for i, c in enumerate(cases):
            refs = [tile(r) for r in c.scene.references] + [blank] * (2 - len(c.subjects))
            rows.append(refs + [tile(gens[name][i]) for name, _ in RUNS] + [tile(base[i])])
    return rows


def learning_curve(run: Path, base: Path, single: list, pairs: list, steps: int) -> list[dict]:
    """Fidelity and binding (one seed) of every checkpoint the run kept: the training curve."""
    curve = []
    for ck in sorted((run / "checkpoints").glob("step_*")):
        model = load_trainer_model(base, ck / "trainable.safetensors", LORA_RANK)
        r = sample_scores(model, single, pairs, 1, steps, ("refs",))["refs"]
        curve.append({"step": int(ck.name.split("_")[1]), **{k: r[k].rate for k in CURVE_METRICS}})
    return curve


def base_curve(base: Path, final_step: int | None, single: list, pairs: list, steps: int) -> list[dict]:
    """The base alone from words (one seed) at each snapshot ``train_base`` wrote and at the end (``final_step``;
    None when the base was not trained in this run): how well the frozen base draws what it is told as it trains
    (DreamO cannot draw better than its base)."""
    snapshots = {int(f.name.split("_")[1]): f for f in snapshot_dir(base).glob("step_*")}
    curve = []
    for step, folder in [*sorted(snapshots.items()), (final_step, base)]:
        r = sample_scores(load_base_model(folder), single, pairs, 1, steps, ("text_words",))["text_words"]
        curve.append({"step": step, **{k: r[k].rate for k in CURVE_METRICS}})
    return curve


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--base", default="", help="an existing toy base folder (skips step 2), e.g. models/toy/base")
    p.add_argument("--base-steps", type=int, default=6000)
    p.add_argument("--steps", type=int, default=800, help="DreamO training steps per run")
    p.add_argument("--cases", type=int, default=48, help="held-out scenes per kind (one / two references)")
    p.add_argument("--seeds", type=int, default=3, help="sampling seeds per held-out scene")
    p.add_argument("--sample-steps", type=int, default=SAMPLE_STEPS, help="10: the toy workflow's pinned steps")
    p.add_argument("--curve-every", type=int, default=200, help="steps between learning-curve checkpoints")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--save-toy", default="", help="copy the base and the L_route export here (e.g. models/toy)")
    return p.parse_args(argv)


class Timer:
    """Wall time of each phase since the start, in order (``metrics.json``'s ``timings_s``)."""

    def __init__(self):
        self.t0, self.phases = time.time(), {}

    def done(self, phase: str) -> None:
        self.phases[phase] = time.time() - self.t0 - sum(self.phases.values())


def toy_base(args: argparse.Namespace, out: Path, timer: Timer) -> Path:
    """``--base``, else a base trained from scratch here (with snapshots for its curve)."""
    if args.base:
        return Path(args.base)
    print(f"training the toy base from scratch ({args.base_steps} steps) ...", flush=True)
    base = train_base(out / "base", steps=args.base_steps, snapshot_every=args.base_steps // 3)
    timer.done("base")
    return base


def train_dreamo_runs(args: argparse.Namespace, out: Path, data: dict[str, Path], base: Path,
                      timer: Timer) -> dict[str, torch.nn.Module]:
    """The two DreamO runs on the frozen base (λ_route 0.1 and 0), each exported by the trainer."""
    models = {}
    for name, route in RUNS:
        print(f"training DreamO '{name}' (λ_route={route}, {args.steps} steps) ...", flush=True)
        cfg = load_config(None, dreamo_overrides(run_dir(out, name), data, base, args.steps, route, args.curve_every))
        models[name] = train(cfg).model
        timer.done(name)
    return models


def evaluate_runs(args: argparse.Namespace, out: Path, models: dict, base: Path, base_trained: bool) -> DemoEvaluation:
    """Scores of both runs, the text-only baseline and the base from words (held-out and training subjects), the
    paired differences, routing mass, ``grid.png`` and the curves."""
    steps = args.sample_steps
    single, pairs = eval_cases(args.cases, 1, seed=1001), eval_cases(args.cases, 2, seed=1002)
    results = {RUNS[0][0]: sample_scores(models[RUNS[0][0]], single, pairs, args.seeds, steps, ("refs", "text_only")),
               RUNS[1][0]: sample_scores(models[RUNS[1][0]], single, pairs, args.seeds, steps, ("refs",))}
    # the ceiling: the frozen base alone, told the subjects in words (held out, and seen in training)
    known = eval_cases(args.cases, 1, seed=1003, pool=TRAIN_SUBJECTS), eval_cases(args.cases, 2, seed=1004,
                                                                                  pool=TRAIN_SUBJECTS)
    plain = load_base_model(base)
    results[BASE_ROW] = {
        "held_out": sample_scores(plain, single, pairs, args.seeds, steps, ("text_words",))["text_words"],
        "training": sample_scores(plain, *known, args.seeds, steps, ("text_words",))["text_words"]}
    diffs = {}
    for k in PAIRED:
        a, b = (np.array(results[name]["refs"][k].outcomes) for name, _ in RUNS)
        diffs[k] = (float(a.mean() - b.mean()), *bootstrap_difference(a, b))
    mass = {name: routing_mass(models[name], pairs) for name, _ in RUNS}
    mass_diff = bootstrap_difference(mass[RUNS[0][0]].mass, mass[RUNS[1][0]].mass)
    write_grid(out / "grid.png", grid_rows(models, single, pairs, steps, 4))
    curves = {name: learning_curve(run_dir(out, name), base, single[:24], pairs[:24], steps) for name, _ in RUNS}
    curve_of_base = (base_curve(base, args.base_steps if base_trained else None, *known, steps)
                     if snapshot_dir(base).is_dir() else [])
    return DemoEvaluation(results, diffs, mass, mass_diff, curves, curve_of_base)


def save_toy(out: Path, base: Path, keep: Path) -> None:
    """Copy the base, the L_route export and its last trainable tensors to ``keep`` (how ``models/toy`` is made)."""
    keep.mkdir(parents=True, exist_ok=True)
    if base.resolve() != (keep / "base").resolve():
        shutil.copytree(base, keep / "base", dirs_exist_ok=True)
    shutil.copy(run_dir(out, RUNS[0][0]) / "dreamo_trained.safetensors", keep / "dreamo_toy.safetensors")
    last = sorted((run_dir(out, RUNS[0][0]) / "checkpoints").glob("step_*"))[-1]
    shutil.copy(last / "trainable.safetensors", keep / "trainable.safetensors")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out, timer = Path(args.out), Timer()
    data = write_toy_datasets(out / "data")
    timer.done("data")
    base = toy_base(args, out, timer)
    models = train_dreamo_runs(args, out, data, base, timer)
    evaluation = evaluate_runs(args, out, models, base, base_trained="base" in timer.phases)
    timer.done("evaluation")
    md = metrics_markdown(evaluation, list(ROWS), RUN_NAMES, args.cases)
    (out / "metrics.md").write_text(md + "\n")
    summary = metrics_summary(evaluation, RUN_NAMES, timer.phases)
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    if args.save_toy:
        save_toy(out, base, Path(args.save_toy))
    print(f"\nheld-out subjects: {args.cases} one-reference and {args.cases} two-reference scenes x {args.seeds} "
          f"seeds (95% Wilson intervals)\n{md}\n\nwrote {out / 'grid.png'} (columns: reference 1 | reference 2 | "
          f"with L_route | without L_route | text only)\ntimings (s): {summary['timings_s']}\n"
          f"total time {time.time() - timer.t0:.0f} s")
    return 0
