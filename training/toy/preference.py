"""The preference stage shown on the toy: ``python -m training.toy.preference [--out runs/toy_preference]``.

1. Start: the shipped placed toy DreamO (``models/toy/runs/placed_route_s0.safetensors``) merged into the base, a
   new zero LoRA on top (``training.preference``: samples before training are the shipped model's, on-policy).
2. On-policy pairs on TRAINING glyphs: one- and two-glyph prompts of the toy's training rows, ``--samples`` samples
   each, scored by program (``score``: cells right at each place, minus 0.5 when the other reference's cells leak
   in); the best sample against one at least ``--min-gap`` worse (``build_preference_pairs``).
3. Three stages on the same pairs and steps, over ``--seeds`` training seeds: Flow-DPO, localized Flow-DPO (M = the
   glyphs' box enlarged by α = 1.2, our LDPO) and the SFT control (flow matching on the preferred samples alone).
4. Held-out glyphs, the same cases and noise for every model: cell accuracy, binding, blend (as the main job), and
   for the localized stage against the plain one the background's change outside M on one-glyph scenes.
   Differences are paired (bootstrap over cases) per seed, and over seeds (t-interval).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..preference.config import load_preference_config
from ..preference.objective import preference_model
from ..preference.pairs import PairPrompt, PairReference, build_preference_pairs, trainer_sampler
from ..preference.stage import train_preference
from .base import toy_model_overrides
from .codec import ToyCodec
from .constants import (
    CELL,
    GLYPH_NATIVE,
    MAIN_EXPORT,
    REF_SIZE,
    SAMPLE_STEPS,
    TARGET_SIZE,
    TOY_DIR,
    TRUE_CFG,
    UPSCALE,
)
from .datasets import Case, training_cases
from .evaluation import evaluate, generate
from .measure import held_out_cases
from .metrics import bootstrap_difference, cell_accuracy, pair_score, seed_interval
from .world import downscale, place_box, upscale

STAGES = ("DPO", "LDPO", "SFT")


def glyph_box_px(case: Case) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) file pixels of the box around the case's glyphs (M before dilation)."""
    boxes = [(c * CELL * UPSCALE, r * CELL * UPSCALE, (c * CELL + GLYPH_NATIVE) * UPSCALE,
              (r * CELL + GLYPH_NATIVE) * UPSCALE) for r, c in case.scene.places]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def prompts_of(cases: list[Case], folder: Path) -> list[PairPrompt]:
    """Each case as a pair prompt: its caption, its glyph references (files) placed in their boxes, its region."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, case in enumerate(cases):
        refs = []
        for index in range(1, len(case.glyphs) + 1):
            k = case.glyph_of(index)
            path = folder / f"{i:05d}_{index}.png"
            Image.fromarray(upscale(case.glyphs[k].pixels())).save(path)
            refs.append(PairReference(path, "ip", index, place_box(case.scene.places[k])))
        out.append(PairPrompt(case.prompt(), tuple(refs), case.plain_prompt(), glyph_box_px(case)))
    return out


def score(case: Case, image: torch.Tensor) -> float:
    """Cells right at each place (mean over the glyphs), minus 0.5 when a place shows the other reference's cells."""
    native = downscale(image.numpy())
    acc = float(np.mean([cell_accuracy(native, p, g) for p, g in zip(case.scene.places, case.glyphs)]))
    if len(case.glyphs) == 2 and pair_score(native, case.scene.places, case.glyphs, tuple(case.glyphs)).blend:
        acc -= 0.5
    return acc


def prompt_scorer(prompts: list[PairPrompt], cases: list[Case]) -> Callable[[PairPrompt, torch.Tensor], float]:
    """``score`` of each prompt's own case: keyed by the prompt (its reference files), not by its caption, which
    many cases share (the caption names places, never the glyph)."""
    by_prompt = dict(zip(prompts, cases, strict=True))
    return lambda prompt, image: score(by_prompt[prompt], image)


def stage_overrides(out: Path, pairs: Path, steps: int, lr: float, rank: int, beta: float, seed: int) -> list[str]:
    return [*toy_model_overrides(TOY_DIR / "base"), f"--model.lora_rank={rank}", f"--model.init_seed={seed}",
            f"--seed={seed}", f"--preference.base=['{MAIN_EXPORT}']", f"--preference.beta={beta}",
            f"--data.datasets={{pairs: '{pairs}'}}", f"--data.buckets=[[{TARGET_SIZE}, {TARGET_SIZE}]]",
            f"--data.ref_res={REF_SIZE}", "--data.placement=box", "--data.batch_size=8",
            "--timestep_sampling=uniform", "--progress=false", "--log_every=10", f"--checkpoint_every={steps}",
            f"--stages=[{{name: preference, steps: {steps}, lr: {lr}, mixture: {{pairs: 1.0}}}}]",
            f"--output_dir={out}"]


MODE = {"DPO": ["--preference.mode=dpo"], "LDPO": ["--preference.mode=dpo", "--preference.localized=true"],
        "SFT": ["--preference.mode=sft"]}


def background_change(before: np.ndarray, after: np.ndarray, cases: list[Case], dilation: float = 1.2) -> np.ndarray:
    """Per case: mean |after - before| (0..1) of the native pixels outside the glyph's box enlarged by
    ``dilation`` (the LDPO region M)."""
    from dreamo_core.preference.regions import box_mask, dilated_box

    out = []
    for b, a, case in zip(before, after, cases):
        x0, y0, x1, y1 = (v // UPSCALE for v in glyph_box_px(case))
        outside = 1.0 - box_mask(dilated_box((x0, y0, x1, y1), dilation, b.shape[1], b.shape[0]), b.shape[1],
                                 b.shape[0]).numpy()[..., 0]
        out.append(float((np.abs(a - b).mean(-1) * outside).sum() / outside.sum()))
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/toy_preference")
    p.add_argument("--prompts", type=int, default=240, help="training prompts (half one glyph, half two)")
    p.add_argument("--samples", type=int, default=4, help="on-policy samples per prompt")
    p.add_argument("--min-gap", type=float, default=0.125, help="a pair's least score difference (2 of 16 cells)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--beta", type=float, default=1250.0)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--cases", type=int, default=120, help="held-out one- and two-glyph cases")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out, t0 = Path(args.out), time.time()
    cases = training_cases(args.prompts // 2, 1, seed=31) + training_cases(args.prompts // 2, 2, seed=32)
    prompts = prompts_of(cases, out / "prompt_refs")
    base_cfg = load_preference_config(None, stage_overrides(out / "probe", out / "pairs", args.steps, args.lr,
                                                            args.rank, args.beta, 0))
    start = preference_model(base_cfg).eval()
    sampler = trainer_sampler(start, ToyCodec(), (TARGET_SIZE, TARGET_SIZE), REF_SIZE, steps=SAMPLE_STEPS,
                              true_cfg=TRUE_CFG)
    print(f"sampling {len(prompts)} training prompts x {args.samples} on-policy ...", flush=True)
    pairs = build_preference_pairs(prompts, sampler, prompt_scorer(prompts, cases), out / "pairs",
                                   samples_per_prompt=args.samples, min_gap=args.min_gap)
    print(f"  {pairs.pairs} pairs from {pairs.prompts_paired} of {len(prompts)} prompts ({time.time() - t0:.0f} s)",
          flush=True)
    single, duo = held_out_cases(args.cases, args.cases)
    before = evaluate(start, single, duo, placed=True)["refs"].values
    start_single = generate(start, single, "refs", True)
    results: dict[str, list[dict]] = {s: [] for s in STAGES}
    for seed in range(args.seeds):
        for stage in STAGES:
            t = time.time()
            cfg = load_preference_config(None, [*stage_overrides(out / f"{stage}_s{seed}", out / "pairs", args.steps,
                                                                 args.lr, args.rank, args.beta, seed), *MODE[stage]])
            model = train_preference(cfg).model.eval()
            after = evaluate(model, single, duo, placed=True)["refs"].values
            change = background_change(start_single, generate(model, single, "refs", True), single)
            results[stage].append({**after, "background_change": change.tolist()})
            print(f"  {stage} seed {seed}: accuracy {np.mean(after['accuracy']):.3f}, binding "
                  f"{np.mean(after['binding']):.3f}, blend {np.mean(after['blend']):.3f}, background change "
                  f"{change.mean():.4f} ({time.time() - t:.0f} s)", flush=True)
    lines = [f"Preference stage on the toy (start: {MAIN_EXPORT.name}; {pairs.pairs} on-policy pairs from "
             f"{len(prompts)} training prompts; {args.steps} steps, lr {args.lr}, rank {args.rank}, β {args.beta}; "
             f"{args.seeds} training seeds; {args.cases} + {args.cases} held-out cases, paired)", "",
             "| model | cell accuracy | binding | blend | background change outside M |", "|---|---|---|---|---|",
             f"| start | {np.mean(before['accuracy']):.3f} | {np.mean(before['binding']):.3f} | "
             f"{np.mean(before['blend']):.3f} | 0 |"]
    for stage, runs in results.items():
        cols = [seed_interval([float(np.mean(r[m])) for r in runs]) for m in ("accuracy", "binding", "blend",
                                                                               "background_change")]
        lines.append(f"| {stage} | " + " | ".join(f"{c[0]:.3f} [{c[1]:.3f}, {c[2]:.3f}]" for c in cols) + " |")
    lines += ["", "Paired differences per seed (bootstrap 95 % over cases):"]
    for metric in ("binding", "blend", "accuracy"):
        for a, b in (("DPO", "start"), ("DPO", "SFT"), ("LDPO", "start"), ("LDPO", "SFT")):
            diffs = []
            for s in range(args.seeds):
                x = np.array(results[a][s][metric])
                y = np.array(before[metric] if b == "start" else results[b][s][metric])
                diffs.append((float(x.mean() - y.mean()), *bootstrap_difference(x, y)))
            lines.append(f"- {metric}, {a} − {b}: " + ", ".join(f"seed {i} {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"
                                                                for i, d in enumerate(diffs)))
    for s in range(args.seeds):
        x, y = np.array(results["LDPO"][s]["background_change"]), np.array(results["DPO"][s]["background_change"])
        d = bootstrap_difference(x, y)
        lines.append(f"- background change outside M, LDPO − DPO, seed {s}: {x.mean() - y.mean():+.4f} "
                     f"[{d[0]:+.4f}, {d[1]:+.4f}]")
    text = "\n".join(lines)
    (out / "metrics.md").write_text(text + "\n")
    (out / "metrics.json").write_text(json.dumps({"start": before, "stages": results, "pairs": pairs.pairs,
                                                  "args": vars(args)}, indent=1))
    print(f"\n{text}\n\nwrote {out / 'metrics.md'}, {out / 'metrics.json'} (total {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
