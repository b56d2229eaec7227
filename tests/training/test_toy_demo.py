"""``python -m training.demo`` on a 10-step run from the repo's toy base: ``metrics.md`` is exactly the metrics text
it prints (the table, routing mass and the learning curves), and its curve lines carry ``metrics.json``'s numbers."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from training.toy.constants import TOY_DIR
from training.toy.demo import main


def test_demo_writes_the_metrics_it_prints(tmp_path: Path, capsys) -> None:
    argv = ["--out", str(tmp_path), "--base", str(TOY_DIR / "base"), "--steps", "10", "--cases", "2", "--seeds", "1",
            "--sample-steps", "2", "--curve-every", "5", "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)  # main sets the process's threads
    printed = capsys.readouterr().out
    md = (tmp_path / "metrics.md").read_text()
    assert md.endswith("\n") and md.rstrip("\n") in printed
    assert md.startswith("| run | fidelity") and "attention routing" in md and "learning curve" in md
    summary = json.loads((tmp_path / "metrics.json").read_text())
    for name, curve in summary["learning_curve"].items():
        assert [c["step"] for c in curve] == [5, 10]
        points = ", ".join(f"{c['step']}: {c['fidelity']:.2f} / {c['color']:.2f} / {c['binding']:.2f} / "
                           f"{c['both_colors']:.2f}" for c in curve)
        assert f"- {name}: {points}" in md.splitlines()
    assert (tmp_path / "grid.png").is_file()
