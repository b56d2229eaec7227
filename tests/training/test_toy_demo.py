"""The main job (``python -m training.demo``) on the shipped toy with few cases: it prints exactly what it writes to
``metrics.md``, whose numbers are ``metrics.json``'s, computed from the per-sample values it stores; the grid's
images come from the generator and agree with the evaluation's sampler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.toy.demo import main
from training.toy.metrics import seed_interval


def test_demo_writes_what_it_prints(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    threads = torch.get_num_threads()
    try:
        assert main(["--out", str(tmp_path), "--cases", "4", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)  # main sets the process's threads
    printed = capsys.readouterr().out
    md = (tmp_path / "metrics.md").read_text()
    assert md.rstrip("\n") in printed and "ComfyUI: not run" in md
    summary = json.loads((tmp_path / "metrics.json").read_text())
    raw = summary["raw"]
    for kind, runs in raw["kinds"].items():
        per_seed = [float(np.mean(raw["runs"][r]["accuracy"])) for r in runs]
        assert summary["kinds"][kind]["accuracy"]["per_seed"] == per_seed
        mean, lo, hi = seed_interval(per_seed)
        assert f"| {kind} ({len(runs)}) | {mean:.2f} [{max(lo, 0):.2f}, {min(hi, 1):.2f}]" in md
        assert all(len(raw["runs"][r]["accuracy"]) == 4 and len(raw["runs"][r]["binding"]) == 4 for r in runs)
    assert summary["generator_vs_sampler_max_abs"] < 2e-5
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size[0] > grid.size[1] / 2 and grid.getextrema() != ((255, 255),) * 3
