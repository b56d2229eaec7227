"""CPU demonstration of L_route: ``python -m training.demo [--out runs/demo] [--steps 200]``.

Writes a synthetic dataset, trains the tiny model twice with identical settings except λ_route (on vs 0),
then measures on held-out two-subject images how much of each reference's attention over the noisy image
falls inside its subject's mask (response maps as the paper's Fig. 3, averaged over the double blocks, t=0.5),
prints the numbers and writes ``sheet.png``: target | per reference: image, mask, map with L_route, map
without | samples of both runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dreamo_core.generator.flux_forward import ReferenceTokens

from .codec import PixelCodec, decode_tokens
from .config import load_config
from .data import BatchPlan, read_metadata
from .model import DreamOTrainModel
from .sampling import euler_sample, mass_inside, response_maps
from .synthetic import make_synthetic_dataset
from .train import Batch, make_batch, train


def overrides(out: Path, data: Path, steps: int, route: float) -> list[str]:
    warm = steps * 3 // 10
    return [
        f"--output_dir={out}", f"--data.datasets={{single: '{data / 'single'}', multi: '{data / 'multi'}'}}",
        "--data.buckets=[[128, 128]]", "--data.ref_res=64", "--data.batch_size=4", "--model.lora_rank=16",
        f"--loss.route={route}", "--loss.holder=0.5", f"--checkpoint_every={steps}",
        f"--stages=[{{name: warmup, steps: {warm}, lr: 0.001, warmup: 10, mixture: {{single: 1.0}}}}, "
        f"{{name: all, steps: {steps - warm}, lr: 0.001, mixture: {{single: 0.4, multi: 0.6}}}}]",
    ]


def eval_batch(data: Path) -> Batch:
    rows = read_metadata(data / "eval", [[128, 128]], 64)
    return make_batch(BatchPlan(rows, [False] * len(rows), 0), PixelCodec(), 64, 0.0, torch.device("cpu"))


def heat(m: torch.Tensor, grid: tuple[int, int], size: int) -> torch.Tensor:
    """(N,) response -> (size, size, 3) heat map in [0, 1] (black = none, yellow = most)."""
    m = (m / m.max().clamp_min(1e-8)).reshape(1, 1, *grid)
    m = F.interpolate(m, size=(size, size), mode="nearest")[0, 0]
    return torch.stack([m, m * 0.85, m * 0.1], dim=-1)


def write_sheet(path: Path, batch: Batch, maps: dict[str, torch.Tensor], samples: dict[str, torch.Tensor], rows: int) -> None:
    codec, size = PixelCodec(), 128
    targets = decode_tokens(codec, batch.latents, batch.grid)
    lines = []
    for b in range(rows):
        tiles = [targets[b]]
        for j, r in enumerate(batch.refs):
            ref = decode_tokens(codec, r.tokens[b : b + 1], r.grid)[0]
            tiles.append(F.pad(ref, (0, 0, 0, size - ref.shape[1], 0, size - ref.shape[0]), value=1.0))
            tiles.append(heat(batch.masks[j, b], batch.grid, size))
            tiles += [heat(maps[k][j, b], batch.grid, size) for k in ("with L_route", "without")]
        tiles += [decode_tokens(codec, samples[k][b : b + 1], batch.grid)[0] for k in ("with L_route", "without")]
        lines.append(torch.cat([F.pad(t, (0, 0, 2, 2, 2, 2), value=1.0) for t in tiles], dim=1))
    Image.fromarray((torch.cat(lines, dim=0).clamp(0, 1) * 255).byte().numpy()).save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--route", type=float, default=1.0, help="λ_route of the 'with' run")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out, t0 = Path(args.out), time.time()
    data = out / "data"
    make_synthetic_dataset(data / "single", 48, seed=0, max_refs=1)
    make_synthetic_dataset(data / "multi", 48, seed=1, max_refs=2)
    make_synthetic_dataset(data / "eval", 16, seed=99, fixed_refs=2)
    ev = eval_batch(data)
    models: dict[str, DreamOTrainModel] = {}
    for name, route in (("with L_route", args.route), ("without", 0.0)):
        print(f"training '{name}' (λ_route={route}, {args.steps} steps) ...", flush=True)
        models[name] = train(load_config(None, overrides(out / name.replace(" ", "_"), data, args.steps, route))).model
    maps, samples = {}, {}
    refs = [ReferenceTokens(r.tokens, r.grid, r.index) for r in ev.refs]
    area = (ev.masks > 0.5).float().mean(-1)  # uniform attention puts exactly this much mass inside
    print(f"\nheld-out two-subject images: {ev.latents.shape[0]}; mean mask area (= mass inside for uniform attention): "
          f"{area.mean():.3f}")
    for name, model in models.items():
        model.eval()
        maps[name] = response_maps(model, ev.latents, ev.grid, refs, ev.captions)
        samples[name] = euler_sample(model, ev.grid, refs, ev.captions, steps=8)
        inside = mass_inside(maps[name], ev.masks)
        print(f"{name:>13}: attention mass inside the subject's mask: {inside.mean():.3f} "
              f"(ref1 {inside[0].mean():.3f}, ref2 {inside[1].mean():.3f}); vs uniform x{(inside / area).mean():.2f}")
    write_sheet(out / "sheet.png", ev, maps, samples, rows=4)
    print(f"\nwrote {out / 'sheet.png'}  (columns: target | per reference: image, mask, map with L_route, map "
          f"without | sample with L_route, sample without)\ntotal time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    raise SystemExit(main())
