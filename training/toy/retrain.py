"""Retrain the toy DreamO from nothing: ``python -m training.toy.retrain [--out runs/toy_retrain]``.

1. writes the toy world's training sets (``datasets``: fresh random glyphs at 3 x 3 places, references = the glyph
   alone, exact masks and boxes, ``[ref#i]`` captions that name only places);
2. trains the toy base from scratch (``base``: a tiny FLUX text-to-image model, every weight) unless ``--base``
   names one;
3. trains every run of ``recipe.RUNS`` with the real trainer (``python -m training.train``, one process each,
   ``--workers`` at a time: placed with and without L_route and diagonal, over training seeds), each exported in
   the official DreamO file format;
4. measures them on held-out glyphs exactly as the main job does (``python -m training.demo``) and says whether the
   shipped toy's numbers (``models/toy/metrics.json``) fall inside this retraining's intervals across seeds;
5. with ``--save-toy DIR`` (e.g. ``models/toy``) writes the result there as the shipped toy.

Training is not bit-reproducible across machines: a retrained model differs from the shipped one, and its numbers
are expected to agree only within the intervals across training seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from ..config import load_config
from .base import train_base
from .constants import BASE_STEPS, DREAMO_STEPS, TOY_DIR
from .datasets import write_toy_datasets
from .demo import N_SINGLE, write_outputs
from .measure import Toy, measure
from .recipe import RUNS, Run, dreamo_overrides
from .report import Measurement

HEADLINE = ("accuracy", "retrieval", "binding", "blend")


def write_run_config(run: Run, out: Path, data: dict[str, Path], base: Path, steps: int | None, curve_every: int = 0) -> Path:
    """The run's resolved trainer config as YAML (``out/<run>/config.yaml``): what ``python -m training.train`` runs
    (``curve_every`` > 0 keeps a checkpoint every that many steps for the learning curve)."""
    cfg = load_config(None, dreamo_overrides(run, out / run.name, data, base, steps, curve_every))
    path = out / run.name / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    return path


def last_log(run_dir: Path) -> dict | None:
    log = run_dir / "loss_log.jsonl"
    if not log.is_file():
        return None
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def train_runs(runs: tuple[Run, ...], out: Path, data: dict[str, Path], base: Path, steps: int | None, workers: int,
               curve_every: int = 0) -> None:
    """Each run in its own ``python -m training.train`` process (one thread each), ``workers`` at a time; a line
    per running run every 15 s (step, loss, s/step); stops at the first failure with its log."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending, running, t0 = list(runs), {}, time.time()
    while pending or running:
        while pending and len(running) < workers:
            run = pending.pop(0)
            config = write_run_config(run, out, data, base, steps, curve_every)
            log = open(out / run.name / "train.log", "w")  # noqa: SIM115 (closed when the process ends)
            proc = subprocess.Popen([sys.executable, "-m", "training.train", str(config)], stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
            running[run] = (proc, log, time.time())
            print(f"  started {run.name} ({run.kind}, seed {run.seed}; {len(pending)} waiting)", flush=True)
        time.sleep(15)
        for run, (proc, log, started) in list(running.items()):
            rec = last_log(out / run.name)
            if rec:
                per = (time.time() - started) / rec["step"]
                total = steps or run.steps
                print(f"  {run.name}: step {rec['step']}/{total} ({rec['stage']}), loss {rec['loss']:.4f}, "
                      f"{per:.2f} s/step, about {per * (total - rec['step']):.0f} s to go", flush=True)
            if proc.poll() is not None:
                log.close()
                del running[run]
                if proc.returncode != 0:
                    raise RuntimeError(f"{run.name} failed (exit {proc.returncode}); its log: "
                                       f"{out / run.name / 'train.log'}")
                print(f"  finished {run.name} ({time.time() - started:.0f} s; {time.time() - t0:.0f} s so far)",
                      flush=True)


def learning_curve(out: Path, base: Path, runs: tuple[Run, ...], n: int = 20) -> dict[str, list[dict]]:
    """Cell accuracy on training glyphs and on held-out glyphs, and held-out binding, at every kept checkpoint of
    the first seed's run of each kind (``n`` cases each): is the copying learned, and does it carry over?"""
    from .datasets import eval_cases, seen_glyphs
    from .evaluation import evaluate
    from .generate import load_trainer_model

    seen = seen_glyphs(10)
    trained = eval_cases(n, 1, 7, pool=seen)
    single, pairs = eval_cases(n, 1, 8), eval_cases(n, 2, 9)
    curves: dict[str, list[dict]] = {}
    firsts = {}
    for run in runs:
        firsts.setdefault(run.kind, run)
    for kind, run in firsts.items():
        for ck in sorted((out / run.name / "checkpoints").glob("step_*")):
            model = load_trainer_model(base, ck / "trainable.safetensors")
            placed = run.placement == "box"
            on_seen = evaluate(model, trained, [], placed, gallery=seen)["refs"]
            held = evaluate(model, single, pairs, placed)["refs"]
            point = {"step": int(ck.name.split("_")[1]), "training_accuracy": on_seen.mean("accuracy"),
                     "held_out_accuracy": held.mean("accuracy"), "held_out_binding": held.mean("binding")}
            curves.setdefault(kind, []).append(point)
            print(f"  curve {kind} step {point['step']}: training glyphs {point['training_accuracy']:.2f}, held-out "
                  f"{point['held_out_accuracy']:.2f}, binding {point['held_out_binding']:.2f}", flush=True)
    return curves


def curve_markdown(curves: dict[str, list[dict]]) -> str:
    lines = ["Learning curve (first seed of each kind; 20 cases each), step: cell accuracy on training glyphs / "
             "on held-out glyphs / held-out binding"]
    for kind, points in curves.items():
        lines.append(f"- {kind}: " + ", ".join(f"{p['step']}: {p['training_accuracy']:.2f} / {p['held_out_accuracy']:.2f}"
                                               f" / {p['held_out_binding']:.2f}" for p in points))
    return "\n".join(lines)


def compare(new: Measurement, shipped: dict | None) -> list[str]:
    """Lines saying, per run kind and headline metric, whether the shipped number lies in the new one's interval
    across seeds."""
    if shipped is None:
        return ["(no shipped metrics to compare with)"]
    old = Measurement.from_json(shipped)
    lines = []
    for kind in new.kinds:
        if kind not in old.kinds:
            continue
        for metric in HEADLINE:
            m, lo, hi = new.rate(kind, metric)
            was = old.rate(kind, metric)[0]
            inside = lo - 1e-9 <= was <= hi + 1e-9
            lines.append(f"  {kind}, {metric}: shipped {was:.2f}, retrained {m:.2f} [{lo:.2f}, {hi:.2f}] -> "
                         f"{'reproduced (inside)' if inside else 'outside the interval'}")
    return lines


def save_toy(out: Path, base: Path, runs: tuple[Run, ...], dest: Path, metrics: Path) -> None:
    """Copy the base, each run's export (and the first run's trainer tensors) and the metrics to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    if base.resolve() != (dest / "base").resolve():
        shutil.rmtree(dest / "base", ignore_errors=True)
        shutil.copytree(base, dest / "base")
    (dest / "runs").mkdir(exist_ok=True)
    files = {}
    for run in runs:
        files[run] = dest / "runs" / f"{run.name}.safetensors"
        shutil.copy(out / run.name / "dreamo_trained.safetensors", files[run])
    first = runs[0]
    last = sorted((out / first.name / "checkpoints").glob("step_*"))[-1]
    shutil.copy(last / "trainable.safetensors", dest / "runs" / f"{first.name}.trainable.safetensors")
    Toy(dest, files).save_manifest()
    shutil.copy(metrics, dest / "metrics.json")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/toy_retrain")
    p.add_argument("--base", default="", help="an existing toy base folder (skips step 2), e.g. models/toy/base")
    p.add_argument("--base-steps", type=int, default=BASE_STEPS)
    p.add_argument("--steps", type=int, default=0, help=f"DreamO training steps per run (default {DREAMO_STEPS} "
                   "placed, half diagonal)")
    p.add_argument("--workers", type=int, default=2, help="runs trained at once (one thread each)")
    p.add_argument("--curve-every", type=int, default=400, help="checkpoint steps of the learning curve (0: none)")
    p.add_argument("--only", default="", help="comma-separated run names (default: every run of the recipe)")
    p.add_argument("--cases", type=int, default=N_SINGLE, help="held-out one- and two-glyph cases per run")
    p.add_argument("--save-toy", default="", help="write the trained toy here (e.g. models/toy)")
    p.add_argument("--resume", action="store_true", help="keep the runs already exported in --out (an interrupted "
                   "retraining goes on where it stopped)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out, t0 = Path(args.out), time.time()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    runs = tuple(r for r in RUNS if not args.only or r.name in args.only.split(","))
    print(f"writing the toy datasets to {out / 'data'} ...", flush=True)
    data = write_toy_datasets(out / "data")
    base = Path(args.base) if args.base else out / "base"
    if not args.base:
        print(f"training the toy base from scratch ({args.base_steps} steps) ...", flush=True)
        train_base(base, steps=args.base_steps)
    timings["data + base"] = time.time() - t0
    done = tuple(r for r in runs if args.resume and (out / r.name / "dreamo_trained.safetensors").is_file())
    if done:
        print(f"keeping {len(done)} runs already trained: {', '.join(r.name for r in done)}", flush=True)
    todo = tuple(r for r in runs if r not in done)
    print(f"training {len(todo)} DreamO runs ({args.workers} at a time) ...", flush=True)
    train_runs(todo, out, data, base, args.steps or None, args.workers, args.curve_every)
    timings["DreamO runs"] = time.time() - t0 - sum(timings.values())
    toy = Toy(out, {r: out / r.name / "dreamo_trained.safetensors" for r in runs}, base)
    print("measuring on held-out glyphs ...", flush=True)
    measurement = measure(toy, args.cases, args.cases)
    timings["evaluation"] = time.time() - t0 - sum(timings.values())
    curves = learning_curve(out, base, runs) if args.curve_every else {}
    timings["learning curve"] = time.time() - t0 - sum(timings.values())
    measurement.timings = timings
    paths = write_outputs(toy, measurement, out, args.cases, args.cases)
    if curves:
        paths["markdown"].write_text(paths["markdown"].read_text() + "\n" + curve_markdown(curves) + "\n")
        summary = json.loads(paths["json"].read_text())
        summary["learning_curve"] = curves
        paths["json"].write_text(json.dumps(summary, indent=1) + "\n")
    shipped = TOY_DIR / "metrics.json"
    lines = compare(measurement, json.loads(shipped.read_text()) if shipped.is_file() else None)
    print("\nretrained against the shipped toy (models/toy/metrics.json):\n" + "\n".join(lines))
    (out / "comparison.txt").write_text("\n".join(lines) + "\n")
    if args.save_toy:
        save_toy(out, base, runs, Path(args.save_toy), paths["json"])
        print(f"saved the toy to {args.save_toy}")
    print(f"\nwrote {', '.join(str(v) for v in paths.values())}, {out / 'comparison.txt'}\n"
          f"timings (s): { {k: round(v) for k, v in timings.items()} }; total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
