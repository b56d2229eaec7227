"""Subject tuning measured on the toy DreamO: fidelity on a held-out subject before and after tuning on ONE image
of it, and on the other held-out subjects (do they get worse?), in one run.

    python -m training.toy.subject_tuning [--subject 0] [--steps 300] [--seeds 4] [--cases 30] [--regular-rows 96]

1. One toy scene of held-out subject ``HELD_OUT[--subject]`` (never in the toy's training data) and its exact mask
   are written as the tune's one image (``world``, 4x file pixels as the toy's files).
2. ``training.tune_subject`` tunes a new LoRA on it, starting from the repo's toy (``models/toy``: base folder +
   ``dreamo_toy.safetensors`` merged and frozen), with views on the toy's sizes (subject 35-47 % of the view,
   the toy's gray background) and a toy caption; with ``--regular-rows N`` N one-subject scenes of the toy's
   TRAINING subjects (with their references and masks) are mixed in at ``--regular-weight`` (``--regular``).
3. The base (before) and the tuned model (after) generate the same held-out scenes with the same noise (the toy
   evaluation's ``refs`` mode: the subject's reference + the toy's caption): ``--cases`` scenes of the tuned
   subject and as many of each other held-out subject, ``--seeds`` noise seeds each; scored by the toy's detector
   (``fidelity`` = colour + shape, ``color`` = colour only), with 95 % Wilson intervals.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dreamo_core.generator.loading import LoraRequest

from ..subject.lora import subject_tune_model
from ..subject.tune import build_parser, tune, tune_config
from .base import toy_model_overrides
from .constants import REF_SIZE, TARGET_SIZE, TOY_DIR
from .datasets import EvalCase, write_group
from .evaluation import generate, score_single
from .metrics import wilson
from .world import HELD_OUT, make_scene, upscale

TOY_OVERRIDES = [*toy_model_overrides(TOY_DIR / "base"), "--timestep_sampling=uniform",
                 f"--data.ref_res={REF_SIZE}", "--progress=false", "--log_every=0"]


def subject_cases(index: int, n: int, seed: int) -> list[EvalCase]:
    rng = np.random.default_rng(seed)
    return [EvalCase(make_scene(rng, [HELD_OUT[index]])) for _ in range(n)]


def scores(model: torch.nn.Module, cases: list[EvalCase], seeds: int, steps: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"fidelity": [], "color": []}
    for seed in range(seeds):
        s = score_single(generate(model, cases, "refs", seed, steps), cases)
        for k in out:
            out[k] += s[k].outcomes
    return out


def cell(outcomes: list[int]) -> str:
    lo, hi = wilson(int(sum(outcomes)), len(outcomes))
    return f"{np.mean(outcomes):.2f} [{lo:.2f}, {hi:.2f}] (n={len(outcomes)})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subject", type=int, default=0, help=f"index into HELD_OUT (0..{len(HELD_OUT) - 1})")
    p.add_argument("--steps", type=int, default=200, help="tuning steps")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--cases", type=int, default=24, help="scenes per subject")
    p.add_argument("--sample-steps", type=int, default=12)
    p.add_argument("--regular-rows", type=int, default=0, help="toy training scenes mixed in (0 = none)")
    p.add_argument("--regular-weight", type=float, default=0.5)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="tune_toy_"))
    subject = HELD_OUT[a.subject]
    scene = make_scene(np.random.default_rng(123), [subject])
    Image.fromarray(upscale(scene.image)).save(work / "subject.png")
    Image.fromarray(upscale(scene.masks[0].astype(np.uint8) * 255)).save(work / "mask.png")
    argv_tune = [str(work / "subject.png"), "--mask", str(work / "mask.png"), "--out", str(work / "subject.safetensors"),
                 "--base", str(TOY_DIR / "dreamo_toy.safetensors"), "--size", str(TARGET_SIZE), "--views", "48",
                 "--backgrounds", "gray", "--scale", "0.35,0.47", "--caption", "a [ref#1] on a gray background",
                 "--steps", str(a.steps), "--lr", str(a.lr), "--rank", str(a.rank), "--batch-size", "4"]
    if a.regular_rows:
        argv_tune += ["--regular", str(write_group(work / "regular", a.regular_rows, 1, seed=11)),
                      "--regular-weight", str(a.regular_weight)]
    args, extra = build_parser().parse_known_args(argv_tune + TOY_OVERRIDES)
    cfg = tune_config(args, extra, work / "cfg_probe", prior=False)
    before = subject_tune_model(cfg.model, [LoraRequest.parse(str(TOY_DIR / "dreamo_toy.safetensors"))]).eval()
    result = tune(args, extra)
    after = result.model.eval()
    others = [i for i in range(len(HELD_OUT)) if i != a.subject]
    rows = [(f"tuned subject: {subject.words}", subject_cases(a.subject, a.cases, 7))]
    rows.append(("other held-out subjects", [c for i in others for c in subject_cases(i, max(1, a.cases // len(others)), 8 + i)]))
    print(f"\nsubject tuning on the toy: one image of '{subject.words}', {a.steps} steps, rank {a.rank}, lr {a.lr}; "
          f"regular rows {a.regular_rows} at {a.regular_weight if a.regular_rows else 0}; {a.seeds} noise seeds, {a.sample_steps} sampling steps; 95% Wilson intervals\n")
    print("| scenes | metric | before tuning | after tuning |\n|---|---|---|---|")
    for name, cases in rows:
        b, f = scores(before, cases, a.seeds, a.sample_steps), scores(after, cases, a.seeds, a.sample_steps)
        for k in ("fidelity", "color"):
            print(f"| {name} | {k} | {cell(b[k])} | {cell(f[k])} |")
    print(f"\nsubject L_diff (fixed noise) {result.evaluation['before']['subject']['diff']:.4f} -> "
          f"{result.evaluation['after']['subject']['diff']:.4f}; total time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
