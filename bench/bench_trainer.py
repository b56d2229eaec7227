"""Trainer step time with and without the routing losses (L_route + L_holder), in ONE run.

    python -m bench.bench_trainer                   # CPU, small model, synthetic data
    python -m bench.bench_trainer --size tiny --steps 10

Target (issue 6): routing losses cost <= 10% over a plain flow-matching LoRA step.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from training.config import load_config
from training.synthetic import make_synthetic_dataset
from training.train import train

SIZES = {
    "tiny": ["--model.num_layers=2", "--model.num_single_layers=2"],
    "small": ["--model.num_layers=2", "--model.num_single_layers=4", "--model.attention_head_dim=64",
              "--model.num_attention_heads=4", "--model.joint_attention_dim=64", "--model.pooled_projection_dim=64",
              "--model.axes_dims_rope=[16, 24, 24]"],
}


def config_args(out: Path, data: Path, steps: int, route: float, holder: float, size: str) -> list[str]:
    return [f"--output_dir={out}", f"--data.datasets={{multi: '{data}'}}", "--data.buckets=[[256, 256]]",
            "--data.ref_res=128", "--data.batch_size=2", "--model.lora_rank=16", f"--loss.route={route}",
            f"--loss.holder={holder}", "--data.plain_caption_prob=0.0", f"--checkpoint_every={10 * steps}",
            "--sample_every=0", "--progress=false", *SIZES[size],
            f"--stages=[{{name: all, steps: {steps}, lr: 0.0001, mixture: {{multi: 1.0}}}}]"]


def seconds_per_step(root: Path, data: Path, steps: int, route: float, holder: float, size: str) -> float:
    """(time of steps+2) - (time of 2 steps), over steps: set-up and the first steps' warm-up cancel out."""
    def run(n: int, tag: str) -> float:
        cfg = load_config(None, config_args(root / tag, data, n, route, holder, size))
        t0 = time.perf_counter()
        train(cfg)
        return time.perf_counter() - t0

    short = run(2, f"short_{route}")
    return (run(steps + 2, f"long_{route}") - short) / steps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--steps", type=int, default=8)
    a = p.parse_args(argv)
    logging.disable(logging.INFO)
    root = Path(tempfile.mkdtemp())
    data = make_synthetic_dataset(root / "data", 16, seed=0, size=(256, 256), max_refs=2, ref_size=128, fixed_refs=2)
    plain = seconds_per_step(root, data, a.steps, 0.0, 0.0, a.size)
    routed = seconds_per_step(root, data, a.steps, 1.0, 0.5, a.size)
    print(f"\n## Trainer step ({a.size}, CPU, batch 2, 256² targets + two 128² references)\n")
    print("| step | s/step | ratio |\n|---|---|---|")
    print(f"| flow matching only | {plain:.3f} | 1.000 |")
    print(f"| + L_route + L_holder | {routed:.3f} | {routed / plain:.3f} ({(routed / plain - 1) * 100:+.1f}%; target <= +10%) |")


if __name__ == "__main__":
    main()
