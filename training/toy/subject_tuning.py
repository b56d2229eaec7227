"""Subject tuning measured on the toy DreamO: one held-out glyph's cell accuracy before and after tuning on ONE
image of it, and the other held-out glyphs' (do they get worse?), in one run.

    python -m training.toy.subject_tuning [--glyph 0] [--run diagonal_route_s0] [--steps 200] [--regular-rows 96]

1. The glyph's reference image (``HELD_OUT[--glyph]``, never in the toy's training data) is the tune's one image.
2. ``training.tune_subject`` tunes a new LoRA on it, starting from a shipped toy run (``--run``, default the
   diagonal model: DreamO's own ids, whose zero-shot copy is weak, so a tune has something to add) merged and
   frozen, with views on the toy's sizes (the glyph at half the view, no flips: a flipped glyph is another
   identity); with ``--regular-rows N`` N one-glyph rows of the toy's TRAINING glyphs are mixed in at
   ``--regular-weight`` (``--regular``).
3. The run's model (before) and the tuned model (after) generate the same held-out scenes with the same noise (the
   toy evaluation's ``refs`` mode): ``--cases`` scenes of the tuned glyph and as many of the other held-out glyphs;
   scored as the main job (cell accuracy, with 95 % bootstrap intervals; paired differences).
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
from .datasets import Case, random_case, write_group
from .evaluation import generate, score_single
from .metrics import bootstrap_difference, mean_interval
from .world import HELD_OUT, upscale

TOY_OVERRIDES = [*toy_model_overrides(TOY_DIR / "base"), "--timestep_sampling=uniform",
                 f"--data.ref_res={REF_SIZE}", "--progress=false", "--log_every=0"]


def glyph_cases(index: int, n: int, seed: int) -> list[Case]:
    """``n`` one-glyph held-out scenes of ``HELD_OUT[index]``."""
    rng = np.random.default_rng(seed)
    return [random_case(rng, [HELD_OUT[index]]) for _ in range(n)]


def accuracy(model: torch.nn.Module, cases: list[Case], placed: bool) -> np.ndarray:
    return np.array(score_single(generate(model, cases, "refs", placed), cases).values["accuracy"])


def cell(values: np.ndarray) -> str:
    lo, hi = mean_interval(values)
    return f"{values.mean():.2f} [{lo:.2f}, {hi:.2f}] (n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--glyph", type=int, default=0, help=f"index into HELD_OUT (0..{len(HELD_OUT) - 1})")
    p.add_argument("--run", default="diagonal_route_s0", help="the shipped toy run to tune (models/toy/runs/NAME)")
    p.add_argument("--steps", type=int, default=200, help="tuning steps")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--cases", type=int, default=36, help="scenes of the tuned glyph (and of the others in all)")
    p.add_argument("--regular-rows", type=int, default=0, help="toy training rows mixed in (0 = none)")
    p.add_argument("--regular-weight", type=float, default=0.5)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="tune_toy_"))
    run_file = TOY_DIR / "runs" / f"{a.run}.safetensors"
    placed = a.run.startswith("placed")
    Image.fromarray(upscale(HELD_OUT[a.glyph].pixels())).save(work / "glyph.png")
    argv_tune = [str(work / "glyph.png"), "--out", str(work / "glyph_lora.safetensors"), "--base", str(run_file),
                 "--size", str(TARGET_SIZE), "--views", "48", "--backgrounds", "gray", "--scale", "0.5,0.5",
                 "--flip", "0", "--align", "32", "--caption", "a [ref#1] on a gray background", "--steps", str(a.steps),
                 "--lr", str(a.lr), "--rank", str(a.rank), "--batch-size", "4"]
    if a.regular_rows:
        argv_tune += ["--regular", str(write_group(work / "regular", a.regular_rows, 1, seed=11)),
                      "--regular-weight", str(a.regular_weight)]
    args, extra = build_parser().parse_known_args(argv_tune + TOY_OVERRIDES)
    cfg = tune_config(args, extra, work / "cfg_probe", prior=False)
    before = subject_tune_model(cfg.model, [LoraRequest.parse(str(run_file))]).eval()
    after = tune(args, extra).model.eval()
    others = [i for i in range(len(HELD_OUT)) if i != a.glyph]
    rows = [(f"tuned glyph (held-out {a.glyph})", glyph_cases(a.glyph, a.cases, 7)),
            ("the other held-out glyphs", [c for i in others for c in glyph_cases(i, max(1, a.cases // len(others)), 8 + i)])]
    print(f"\nsubject tuning on the toy ({a.run}): one image of held-out glyph {a.glyph}, {a.steps} steps, rank "
          f"{a.rank}, lr {a.lr}; regular rows {a.regular_rows} at {a.regular_weight if a.regular_rows else 0}; cell "
          "accuracy with 95 % bootstrap intervals, paired differences\n")
    print("| scenes | before tuning | after tuning | after − before |\n|---|---|---|---|")
    for name, cases in rows:
        b, f = accuracy(before, cases, placed), accuracy(after, cases, placed)
        lo, hi = bootstrap_difference(f, b)
        print(f"| {name} | {cell(b)} | {cell(f)} | {f.mean() - b.mean():+.2f} [{lo:+.2f}, {hi:+.2f}] |")
    print(f"\ntotal time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
