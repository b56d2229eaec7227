"""The toy DreamO's main job: ``python -m training.demo [--out runs/toy_demo]`` (minutes on a CPU).

Loads the trained toy shipped in ``models/toy`` (a tiny FLUX base trained from scratch, and DreamO trained on it
by this repository's trainer: placed with and without L_route over three training seeds, diagonal over two; each
an exported file in the official DreamO format) and shows what DreamO is for: copying an identity it never saw
from one reference. It
1. samples every run on held-out glyphs (never in any training row) and scores the pixels by program: cell
   accuracy, >= 90 % cells, retrieval among the 10 held-out glyphs, binding / blend / swap with two references,
   the text-only baseline against chance, and the routing mass L_route trains;
2. samples the grid through the ``dreamo`` generator (the exported files merged into the base, as a user runs them)
   and checks each image against the evaluation's sampler; with ComfyUI importable (``COMFYUI_PATH``), also
   through the ComfyUI nodes (``workflows/dreamo_toy.json``);
3. writes ``grid.png``, ``metrics.md`` (also printed) and ``metrics.json``, and prints where they are.

``python -m training.toy.retrain`` retrains all of it from nothing (about 20 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from .constants import TOY_DIR
from .measure import Toy, grid_cases, grid_rows, measure
from .recipe import PLACED, PLACED_ROUTE
from .report import Measurement, tables, write_grid

N_SINGLE = N_PAIRS = 40  # held-out cases per run: each of the 10 held-out glyphs four times alone, 40 pairs


def comfyui_check(toy: Toy) -> str:
    """One line: the toy workflow run through ComfyUI's nodes against the generator, or why it was not run."""
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        return "ComfyUI: not run (set COMFYUI_PATH to a ComfyUI checkout to also sample through its nodes)"
    from .comfyui import workflow_agreement

    return workflow_agreement(toy, Path(path))


def write_outputs(toy: Toy, m: Measurement, out: Path, n_single: int, n_pairs: int) -> dict[str, Path]:
    """grid.png (through the generator, checked against the sampler), metrics.md and metrics.json in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    cases, numbers = grid_cases(n_single, n_pairs)
    headers, rows, worst = grid_rows(toy, cases, numbers)
    write_grid(out / "grid.png", headers, rows,
               title="held-out glyphs: reference(s) -> samples of the first seed's model of each kind (dreamo generator)")
    m.timings["grid"] = time.time() - t
    md = tables(m, PLACED_ROUTE, PLACED)
    md += (f"\n\nThe grid's {len(cases) * (len(headers) - 2)} images come from the `dreamo` generator; the evaluation's "
           f"batched sampler gives the same images within {worst:.1e} (max abs pixel difference, 0..1).")
    (out / "metrics.md").write_text(md + "\n")
    summary = m.to_json()
    summary["generator_vs_sampler_max_abs"] = worst
    (out / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    return {"grid": out / "grid.png", "markdown": out / "metrics.md", "json": out / "metrics.json"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/toy_demo")
    p.add_argument("--toy", default=str(TOY_DIR), help="a trained toy folder (manifest.json, base/, runs/)")
    p.add_argument("--cases", type=int, default=N_SINGLE, help="held-out one- and two-glyph cases per run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the tiny model gains nothing from more, and a busy machine slows many threads down)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0, out = time.time(), Path(args.out)
    toy = Toy.load(args.toy)
    print(f"the trained toy in {toy.folder}: {len(toy.runs)} DreamO runs "
          f"({', '.join(f'{k}: {len(v)} seeds' for k, v in toy.kinds().items())}) on its base", flush=True)
    print(f"sampling and scoring {args.cases} + {args.cases} held-out cases per run ...", flush=True)
    m = measure(toy, args.cases, args.cases)
    m.timings["evaluation"] = time.time() - t0
    print("sampling the grid through the dreamo generator ...", flush=True)
    paths = write_outputs(toy, m, out, args.cases, args.cases)
    comfy = comfyui_check(toy)
    md = paths["markdown"].read_text().rstrip() + "\n\n" + comfy + "\n"
    paths["markdown"].write_text(md)
    print(f"\n{md}\nwrote {paths['grid']}, {paths['markdown']}, {paths['json']} (total {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
