"""The toy DreamO, end to end on a CPU: ``python -m training.demo [--out runs/demo]``.

1. writes the toy world's training sets (``training.toy_data``: 1 or 2 subjects = shape x colour x pattern on
   random backgrounds, references on white, exact masks, ``[ref#i]`` captions; six subjects held out);
2. trains the toy base from scratch (``training.toy_base``: a tiny FLUX text-to-image model, every weight) unless
   ``--base`` names one (e.g. the repo's ``models/toy/base``);
3. trains DreamO on the frozen base twice with the real trainer (``training.train``: LoRA on the official targets
   + tables + placeholder rows; flow matching + L_route + L_holder; three stages), identical except λ_route
   (0.1 vs 0), each exported in the official DreamO file format (``dreamo_trained.safetensors``);
4. measures on held-out subjects, with the trainer's sampler (the generator's schedule and noise): subject fidelity
   (one reference), attribute binding (two), the text-only baseline, with Wilson 95% intervals over cases x seeds,
   and the paired bootstrap interval of binding with minus without L_route; and the ceiling: the frozen base
   alone told the subjects in words (held-out and training subjects), with its curve over the base's training;
5. writes ``grid.png`` (references -> with L_route | without | text only), ``metrics.json``, ``metrics.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import load_config
from .toy_base import snapshot_dir, toy_model_overrides, train_base
from .toy_data import eval_cases, write_toy_datasets
from .toy_eval import Score, evaluate, generate, load_base_model, routing_mass
from .toy_generate import LORA_RANK, TOY_REF_RES, TOY_SIZE, load_trainer_model
from .toy_metrics import bootstrap_difference
from .toy_world import TRAIN_SUBJECTS
from .train import train

RUNS = (("with L_route", 0.1), ("without L_route", 0.0))  # λ 1 overwhelms the flow loss here (training/README)
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
        f"--output_dir={out}", f"--data.datasets={{{sets}}}", f"--data.buckets=[[{TOY_SIZE}, {TOY_SIZE}]]",
        f"--data.ref_res={TOY_REF_RES}",
        "--data.batch_size=8", *toy_model_overrides(base), "--timestep_sampling=uniform",
        f"--model.lora_rank={LORA_RANK}",
        f"--loss.route={route}", "--loss.holder=0.5", f"--checkpoint_every={checkpoint_every or steps}",
        f"--keep_checkpoints={0 if checkpoint_every else 1}",
        "--progress=false", "--log_every=25",
        f"--stages=[{{name: subject, steps: {s1}, lr: 0.001, warmup: 20, mixture: {{single: 1.0}}}}, "
        f"{{name: all, steps: {steps - s1 - s3}, lr: 0.001, mixture: {{single: 0.4, multi: 0.6}}}}, "
        f"{{name: quality, steps: {s3}, lr: 0.0003, mixture: {{self: 1.0}}, ref_token_drop: 0.95}}]",
    ]


def tile(native: np.ndarray, px: int = 96) -> np.ndarray:
    """A native image (h, w, 3) in [0, 1] or uint8 -> uint8 (px, px, 3) by pixel repetition, centred on white."""
    img = native if native.dtype == np.uint8 else (np.clip(native, 0, 1) * 255).round().astype(np.uint8)
    rep = px // max(img.shape[:2])
    img = img.repeat(rep, 0).repeat(rep, 1)
    out = np.full((px, px, 3), 255, np.uint8)
    y, x = (px - img.shape[0]) // 2, (px - img.shape[1]) // 2
    out[y : y + img.shape[0], x : x + img.shape[1]] = img
    return out


def write_grid(path: Path, rows: list[list[np.ndarray]]) -> None:
    """Rows of equally many tiles -> one PNG with 4-px white gutters."""
    pad = 4
    lines = [np.concatenate([np.pad(t, ((pad, pad), (pad, pad), (0, 0)), constant_values=255) for t in r], 1)
             for r in rows]
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    Image.fromarray(np.concatenate(lines, 0)).save(path)


def grid_rows(models: dict, single: list, pairs: list, steps: int, n: int) -> list[list[np.ndarray]]:
    """Per case: reference(s) | with L_route | without L_route | text only (seed 0, the first ``n`` cases)."""
    rows = []
    blank = np.full((96, 96, 3), 255, np.uint8)
    for cases in (single[:n], pairs[:n]):
        gens = {name: generate(m, cases, "refs", 0, steps) for name, m in models.items()}
        base = generate(models[RUNS[0][0]], cases, "text_only", 0, steps)
        for i, c in enumerate(cases):
            refs = [tile(r) for r in c.scene.references] + [blank] * (2 - len(c.subjects))
            rows.append(refs + [tile(gens[name][i]) for name, _ in RUNS] + [tile(base[i])])
    return rows


def learning_curve(run_dir: Path, base: Path, single: list, pairs: list, steps: int) -> list[dict]:
    """Fidelity and binding (one seed) of every checkpoint the run kept: the training curve."""
    curve = []
    for ck in sorted((run_dir / "checkpoints").glob("step_*")):
        model = load_trainer_model(base, ck / "trainable.safetensors", LORA_RANK)
        r = evaluate(model, single, pairs, 1, steps, ("refs",))["refs"]
        curve.append({"step": int(ck.name.split("_")[1]), **{k: r[k].rate for k in ("fidelity", "color", "binding",
                                                                                     "both_colors")}})
    return curve


PAIRED = {"binding": "binding", "both_colors": "both colours"}  # with − without L_route, paired bootstrap


def table(rows: list[tuple[str, dict[str, Score]]], diffs: dict[str, tuple[float, float, float]]) -> str:
    """The markdown metrics table: one (label, scores) per row."""
    lines = ["| run | fidelity, 1 ref (colour + shape) | + pattern | colour only | binding, 2 refs | swaps | "
             "both colours |", "|---|---|---|---|---|---|---|"]
    for label, s in rows:
        lines.append(f"| {label} | {s['fidelity'].text()} | {s['fidelity_pattern'].text()} | {s['color'].text()} | "
                     f"{s['binding'].text()} | {s['swap'].text()} | {s['both_colors'].text()} |")
    lines.append("")
    lines += [f"{PAIRED[k]} with − without L_route: {d[0]:+.2f}, paired bootstrap 95% [{d[1]:+.2f}, {d[2]:+.2f}]"
              for k, d in diffs.items()]
    return "\n".join(lines)


def base_curve(base: Path, final_step: int | None, single: list, pairs: list, steps: int) -> list[dict]:
    """The base alone from words (one seed) at each snapshot ``train_base`` wrote and at the end (``final_step``;
    None when the base was not trained in this run): how well the frozen base draws what it is told as it trains
    (DreamO cannot draw better than its base)."""
    snapshots = {int(f.name.split("_")[1]): f for f in snapshot_dir(base).glob("step_*")}
    curve = []
    for step, folder in [*sorted(snapshots.items()), (final_step, base)]:
        r = evaluate(load_base_model(folder), single, pairs, 1, steps, ("text_words",))["text_words"]
        curve.append({"step": step, **{k: r[k].rate for k in ("fidelity", "color", "binding", "both_colors")}})
    return curve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--base", default="", help="an existing toy base folder (skips step 2), e.g. models/toy/base")
    p.add_argument("--base-steps", type=int, default=6000)
    p.add_argument("--steps", type=int, default=800, help="DreamO training steps per run")
    p.add_argument("--cases", type=int, default=48, help="held-out scenes per kind (one / two references)")
    p.add_argument("--seeds", type=int, default=3, help="sampling seeds per held-out scene")
    p.add_argument("--sample-steps", type=int, default=10, help="10: the toy workflow's pinned steps")
    p.add_argument("--curve-every", type=int, default=200, help="steps between learning-curve checkpoints")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--save-toy", default="", help="copy the base and the L_route export here (e.g. models/toy)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out, t0 = Path(args.out), time.time()
    timings: dict[str, float] = {}
    data = write_toy_datasets(out / "data")
    timings["data"] = time.time() - t0
    base = Path(args.base) if args.base else None
    if base is None:
        print(f"training the toy base from scratch ({args.base_steps} steps) ...", flush=True)
        base = train_base(out / "base", steps=args.base_steps, snapshot_every=args.base_steps // 3)
        timings["base"] = time.time() - t0 - sum(timings.values())
    models = {}
    for name, route in RUNS:
        print(f"training DreamO '{name}' (λ_route={route}, {args.steps} steps) ...", flush=True)
        cfg = load_config(None, dreamo_overrides(out / name.replace(" ", "_"), data, base, args.steps, route,
                                                 args.curve_every))
        models[name] = train(cfg).model
        timings[name] = time.time() - t0 - sum(timings.values())
    single, pairs = eval_cases(args.cases, 1, seed=1001), eval_cases(args.cases, 2, seed=1002)
    results = {RUNS[0][0]: evaluate(models[RUNS[0][0]], single, pairs, args.seeds, args.sample_steps,
                                    ("refs", "text_only")),
               RUNS[1][0]: evaluate(models[RUNS[1][0]], single, pairs, args.seeds, args.sample_steps, ("refs",))}
    # the ceiling: the frozen base alone, told the subjects in words (held out, and seen in training)
    known = eval_cases(args.cases, 1, seed=1003, pool=TRAIN_SUBJECTS), eval_cases(args.cases, 2, seed=1004,
                                                                                  pool=TRAIN_SUBJECTS)
    plain = load_base_model(base)
    results[BASE_ROW] = {"held_out": evaluate(plain, single, pairs, args.seeds, args.sample_steps, ("text_words",))[
        "text_words"], "training": evaluate(plain, *known, args.seeds, args.sample_steps, ("text_words",))["text_words"]}
    diffs = {}
    for k in PAIRED:
        a, b = (np.array(results[name]["refs"][k].outcomes) for name, _ in RUNS)
        diffs[k] = (float(a.mean() - b.mean()), *bootstrap_difference(a, b))
    mass = {name: routing_mass(models[name], pairs) for name, _ in RUNS}
    mass_diff = bootstrap_difference(mass[RUNS[0][0]].mass, mass[RUNS[1][0]].mass)
    write_grid(out / "grid.png", grid_rows(models, single, pairs, args.sample_steps, 4))
    curves = {name: learning_curve(out / name.replace(" ", "_"), base, single[:24], pairs[:24], args.sample_steps)
              for name, _ in RUNS}
    trained_here = "base" in timings
    curve_of_base = (base_curve(base, args.base_steps if trained_here else None, *known, args.sample_steps)
                     if snapshot_dir(base).is_dir() else [])
    timings["evaluation"] = time.time() - t0 - sum(timings.values())
    md = table([(label, results[run][mode]) for label, run, mode in ROWS], diffs)
    md += ("\n\nattention routing (share of each reference's image attention on its own subject; held-out "
           "two-subject scenes at sigma 0.5, the layers L_route trains): "
           + ", ".join(f"{name} {m.mass.mean():.2f}" for name, m in mass.items())
           + f", uniform attention {mass[RUNS[0][0]].chance.mean():.2f}; with − without "
           f"{mass[RUNS[0][0]].mass.mean() - mass[RUNS[1][0]].mass.mean():+.2f}, paired bootstrap 95% "
           f"[{mass_diff[0]:+.2f}, {mass_diff[1]:+.2f}]")
    (out / "metrics.md").write_text(md + "\n")
    summary = {run: {mode: {k: {"rate": s.rate, "ci95": s.interval(), "n": len(s.outcomes)} for k, s in m.items()}
                     for mode, m in by.items()} for run, by in results.items()}
    summary.update({f"{k}_difference": {"value": d[0], "ci95": d[1:]} for k, d in diffs.items()})
    summary["routing_mass"] = {**{name: float(m.mass.mean()) for name, m in mass.items()},
                               "uniform": float(mass[RUNS[0][0]].chance.mean()), "difference_ci95": mass_diff}
    summary["learning_curve"] = curves
    summary["base_curve"] = curve_of_base
    md += ("\n\nlearning curve (24 + 24 held-out scenes, seed 0), step: fidelity / colour only / binding / both "
           "colours\n") + "\n".join(
        f"- {name}: " + ", ".join(f"{c['step']}: {c['fidelity']:.2f} / {c['color']:.2f} / {c['binding']:.2f} / "
                                  f"{c['both_colors']:.2f}" for c in curve)
        for name, curve in curves.items())
    if curve_of_base:
        md += ("\n\nbase curve (the toy base alone, training subjects in words, "
               f"{args.cases} + {args.cases} scenes, seed 0), base step: "
               "fidelity / colour only / binding / both colours\n- " + ", ".join(
                   f"{c['step'] or 'final'}: {c['fidelity']:.2f} / {c['color']:.2f} / {c['binding']:.2f} / "
                   f"{c['both_colors']:.2f}" for c in curve_of_base))
    summary["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    if args.save_toy:
        keep = Path(args.save_toy)
        keep.mkdir(parents=True, exist_ok=True)
        if base.resolve() != (keep / "base").resolve():
            shutil.copytree(base, keep / "base", dirs_exist_ok=True)
        shutil.copy(out / "with_L_route" / "dreamo_trained.safetensors", keep / "dreamo_toy.safetensors")
        last = sorted((out / "with_L_route" / "checkpoints").glob("step_*"))[-1]
        shutil.copy(last / "trainable.safetensors", keep / "trainable.safetensors")
    print(f"\nheld-out subjects: {len(single)} one-reference and {len(pairs)} two-reference scenes x {args.seeds} "
          f"seeds (95% Wilson intervals)\n{md}\n\nwrote {out / 'grid.png'} (columns: reference 1 | reference 2 | "
          f"with L_route | without L_route | text only)\ntimings (s): {summary['timings_s']}\n"
          f"total time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
