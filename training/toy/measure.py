"""Measure a set of exported toy DreamO runs on held-out glyphs (the main job's and the retraining's evaluation)
and sample the grid through the ``dreamo`` generator.

``Toy`` is a folder as ``models/toy`` holds it: ``base/`` (diffusers folder) and ``manifest.json`` listing each run
(placement, λ_route, training seed) with its exported DreamO file in the official format.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dreamo_core.generator.pipeline import ReferenceInput

from .datasets import Case, eval_cases
from .evaluation import evaluate, generate, load_exported_model, routing_mass, sample_seed
from .generate import load_toy_generator, toy_settings
from .recipe import Run
from .report import Measurement
from .world import downscale, place_box, upscale

EVAL_SEEDS = (1001, 1002)  # the held-out cases' draws (one and two glyphs); fixed, so every model sees the same
MANIFEST = "manifest.json"


@dataclass
class Toy:
    """A trained toy: its base folder and the exported file of each run."""

    folder: Path
    runs: dict[Run, Path]
    base_folder: Path | None = None  # default: folder / "base"

    @property
    def base(self) -> Path:
        return self.base_folder or self.folder / "base"

    @staticmethod
    def load(folder: str | Path) -> Toy:
        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            raise FileNotFoundError(f"{folder}: no {MANIFEST} (a trained toy: python -m training.toy.retrain "
                                    "--save-toy DIR writes one)")
        entries = json.loads((folder / MANIFEST).read_text())["runs"]
        return Toy(folder, {Run(e["placement"], e["route"], e["seed"]): folder / e["file"] for e in entries})

    def save_manifest(self) -> None:
        runs = [{"placement": r.placement, "route": r.route, "seed": r.seed, "kind": r.kind,
                 "file": str(p.relative_to(self.folder))} for r, p in self.runs.items()]
        (self.folder / MANIFEST).write_text(json.dumps({"base": "base", "runs": runs}, indent=1) + "\n")

    def kinds(self) -> dict[str, list[Run]]:
        out: dict[str, list[Run]] = {}
        for run in sorted(self.runs, key=lambda r: (r.placement != "box", -r.route, r.seed)):
            out.setdefault(run.kind, []).append(run)
        return out


def held_out_cases(n_single: int, n_pairs: int) -> tuple[list[Case], list[Case]]:
    """The evaluation's cases: ``n_single`` one-glyph scenes (the held-out glyphs in turn) and ``n_pairs``
    two-glyph scenes of held-out glyphs."""
    return eval_cases(n_single, 1, EVAL_SEEDS[0]), eval_cases(n_pairs, 2, EVAL_SEEDS[1])


def measure(toy: Toy, n_single: int, n_pairs: int, say: Callable[[str], None] = print) -> Measurement:
    """Every run of ``toy`` on the same held-out cases and noise (refs mode, routing mass on the pairs), and the
    text-only baseline (the first run's model, no references, prompts without identity)."""
    single, pairs = held_out_cases(n_single, n_pairs)
    runs, mass, chance_mass, text_only, kinds = {}, {}, [], {}, {}
    t0 = time.time()
    ordered = [r for rs in toy.kinds().values() for r in rs]
    for i, run in enumerate(ordered, start=1):
        t = time.time()
        model = load_exported_model(toy.base, toy.runs[run])
        placed = run.placement == "box"
        runs[run.name] = evaluate(model, single, pairs, placed)["refs"].values
        m = routing_mass(model, pairs, placed)
        mass[run.name], chance_mass = m.mass.tolist(), m.chance.tolist()
        if i == 1:
            text_only = evaluate(model, single, [], placed, modes=("text_only",))["text_only"].values
        kinds.setdefault(run.kind, []).append(run.name)
        took = time.time() - t
        say(f"  evaluated {run.name} ({i}/{len(ordered)}): cell accuracy {np.mean(runs[run.name]['accuracy']):.2f}, "
            f"binding {np.mean(runs[run.name]['binding']):.2f} ({took:.0f} s; about "
            f"{(time.time() - t0) / i * (len(ordered) - i):.0f} s to go)")
    return Measurement(runs, kinds, text_only, mass, chance_mass)


def grid_cases(n_single: int, n_pairs: int, rows: int = 3) -> tuple[list[Case], list[int]]:
    """The grid's cases, the first ``rows`` one-glyph and ``rows`` two-glyph held-out cases, with their numbers in
    the evaluation's lists (which pick their noise)."""
    single, pairs = held_out_cases(n_single, n_pairs)
    return single[:rows] + pairs[:rows], list(range(rows)) * 2


def generator_image(toy: Toy, run: Run | None, case: Case, seed: int, cache: dict) -> np.ndarray:
    """One case through the ``dreamo`` generator (``run`` None: text only: the first run's file, no references,
    the prompt without identity) as a native image (32, 32, 3) in [0, 1]."""
    key = run or next(iter(toy.kinds().values()))[0]
    if key not in cache:
        cache[key] = load_toy_generator(toy.base, toy.runs[key])
    refs = []
    if run is not None:
        for index in range(1, len(case.glyphs) + 1):
            k = case.glyph_of(index)
            pixels = torch.from_numpy(upscale(case.glyphs[k].pixels())).float() / 255.0
            box = place_box(case.scene.places[k]) if run.placement == "box" else None
            refs.append(ReferenceInput(pixels, "ip", index, box=box))
    image = cache[key].generate(case.prompt() if run is not None else case.plain_prompt(), refs, toy_settings(seed))
    return downscale(image.numpy())


def grid_rows(toy: Toy, cases: list[Case], numbers: list[int]) -> tuple[list[str], list[list[np.ndarray | None]], float]:
    """(headers, rows, max |generator - sampler|): per case its reference(s), then the first seed's model of each
    run kind and text only, every image from the ``dreamo`` generator (the exported file merged into the base),
    each checked against the evaluation's batched sampler on the same noise (``sample_seed(0, number)``)."""
    kinds = toy.kinds()
    columns: list[Run | None] = [runs[0] for runs in kinds.values()] + [None]
    headers = ["reference 1", "reference 2"] + [k.replace(", ", "\n") for k in kinds] + ["text only\n(no references)"]
    rows: list[list[np.ndarray | None]] = []
    for case in cases:
        refs = [case.glyphs[case.glyph_of(i)].pixels() for i in range(1, len(case.glyphs) + 1)]
        rows.append(refs + [None] * (2 - len(refs)))
    cache: dict = {}
    worst = 0.0
    for run in columns:
        model = load_exported_model(toy.base, toy.runs[run or columns[0]])
        for row, case, number in zip(rows, cases, numbers):
            image = generator_image(toy, run, case, sample_seed(0, number), cache)
            mode, placed = ("refs", run.placement == "box") if run is not None else ("text_only", False)
            sampled = generate(model, [case], mode, placed, numbers=[number])[0]
            worst = max(worst, float(np.abs(image - sampled).max()))
            row.append(image)
    return headers, rows, worst
