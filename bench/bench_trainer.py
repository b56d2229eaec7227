"""Trainer step time with and without the routing losses (L_route + L_holder), in ONE run.

    python -m bench.bench_trainer                          # CPU, small model, synthetic data
    python -m bench.bench_trainer --profile                # + where the routed step's extra time goes
    python -m bench.bench_trainer --size full --device cuda --bf16   # FLUX.1-dev architecture, random weights

One model, one batch; the plain step (flow matching only) and the routed steps (routing records on one layer,
and on the layers of the size's config) are timed interleaved, ``--repeat`` rounds; the ratio is the median of
the per-round ratios, so machine drift hits all variants alike. A step is forward + losses + backward + AdamW.

Target (issue 6): routing losses cost <= 10% over a plain flow-matching LoRA step. Next to the measured ratio the
script prints the routing maths' share of the step's FLOPs (3 x forward MACs for forward + backward), the part no
implementation can avoid.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import profile_delta
from bench.flops import forward_flops
from dreamo_core.spec import DreamOSpec
from training.attention_capture import select_layers
from training.codec import PixelCodec
from training.config import TrainConfig, load_config
from training.data import BatchSampler, read_metadata
from training.model import build_model
from training.synthetic import make_synthetic_dataset
from training.train import compute_losses, make_batch, step_noise

SIZES = {  # model overrides, the routing layers the size's config uses, batch / resolution
    "small": dict(model=["--model.num_layers=2", "--model.num_single_layers=4", "--model.attention_head_dim=64",
                         "--model.num_attention_heads=4", "--model.joint_attention_dim=64",
                         "--model.pooled_projection_dim=64", "--model.axes_dims_rope=[16, 24, 24]",
                         "--model.text_max_tokens=64"],
                  layers=["transformer_blocks.*"], image=256, ref=128),
    "full": dict(model=["--model.num_layers=19", "--model.num_single_layers=38", "--model.attention_head_dim=128",
                        "--model.num_attention_heads=24", "--model.joint_attention_dim=4096",
                        "--model.pooled_projection_dim=768", "--model.axes_dims_rope=[16, 56, 56]",
                        "--model.text_max_tokens=512", "--model.gradient_checkpointing=true"],
                 layers=["transformer_blocks.2", "transformer_blocks.8", "transformer_blocks.14"], image=512, ref=512),
}


def make_config(size: str, out: Path, data: Path, bf16: bool) -> TrainConfig:
    s = SIZES[size]
    return load_config(None, [
        f"--output_dir={out}", f"--data.datasets={{multi: '{data}'}}", f"--data.buckets=[[{s['image']}, {s['image']}]]",
        f"--data.ref_res={s['ref']}", "--data.batch_size=2", "--model.lora_rank=128", "--data.plain_caption_prob=0.0",
        f"--model.bf16={str(bf16).lower()}", "--progress=false", *s["model"],
        "--stages=[{name: all, steps: 1000, lr: 0.0001, mixture: {multi: 1.0}}]"])


def routing_share(cfg: TrainConfig, text: int, n: int, refs: list[int], batch: int, n_layers: int) -> float:
    """MACs of the routing maps (reference queries x target keys, plus the softmax and means, ~2 more passes)
    over the MACs of the model forward, both x3 for forward + backward."""
    m = cfg.model
    d = m.num_attention_heads * m.attention_head_dim
    spec = DreamOSpec(hidden_size=d, num_double_blocks=m.num_layers, num_single_blocks=m.num_single_layers,
                      t5_dim=m.joint_attention_dim)
    model = forward_flops(n + sum(refs), text, spec).total * batch
    route = n_layers * batch * sum(refs) * n * (d + 2 * m.num_attention_heads)
    return route / model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (as model.bf16 in training)")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--profile", action="store_true", help="print the top ops of the routed step minus the plain one")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp())
    s = SIZES[a.size]
    data = make_synthetic_dataset(root / "data", 4, seed=0, size=(s["image"], s["image"]), max_refs=2,
                                  ref_size=s["ref"], fixed_refs=2)
    cfg = make_config(a.size, root / "out", data, a.bf16)
    device = torch.device(a.device)
    model = build_model(cfg.model).to(device).train()
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-6)
    groups = {"multi": read_metadata(data, cfg.data.buckets, cfg.data.ref_res)}
    plan = BatchSampler(groups, cfg.data.batch_size, 0.0, 0).plan(0, {"multi": 1.0}, 0, 1)
    batch = make_batch(plan, PixelCodec(), cfg.data.ref_res, 0.0, device)
    noise, t = step_noise(cfg, 0, tuple(batch.latents.shape), 0, 1)
    noise, t = noise.to(device), t.to(device)
    plain_cfg = replace(cfg, loss=replace(cfg.loss, route=0.0, holder=0.0))
    route_cfg = replace(cfg, loss=replace(cfg.loss, route=0.5, holder=0.4))
    names = sorted(select_layers(model.transformer, s["layers"]))
    variants: dict[str, tuple[TrainConfig, frozenset[str]]] = {
        "flow matching only": (plain_cfg, frozenset()),
        f"+ L_route + L_holder, 1 layer ({names[0]})": (route_cfg, frozenset(names[:1])),
        f"+ L_route + L_holder, {len(names)} layers ({', '.join(s['layers'])})": (route_cfg, frozenset(names)),
    }

    def step(c: TrainConfig, layers: frozenset[str]) -> Callable[[], None]:
        def run() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
                losses = compute_losses(model, batch, c, noise, t, layers)
            losses["loss"].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run

    runs = {k: step(*v) for k, v in variants.items()}
    times: dict[str, list[float]] = {k: [] for k in runs}
    peaks: dict[str, float] = {}
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(a.repeat):
        for k, fn in runs.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
            if device.type == "cuda":
                peaks[k] = torch.cuda.max_memory_allocated() / 2**30
    med = {k: statistics.median(v) for k, v in times.items()}
    plain_times = times["flow matching only"]
    # ratio: median of the per-round ratios (each round times all variants back to back, so drift cancels)
    ratio = {k: statistics.median(x / y for x, y in zip(v, plain_times)) for k, v in times.items()}
    text, n = cfg.model.text_max_tokens, batch.latents.shape[1]
    refs = [r.tokens.shape[1] for r in batch.refs]
    print(f"\n## Trainer step ({a.size}, {a.device}{', bf16' if a.bf16 else ''}, batch {cfg.data.batch_size}, "
          f"{s['image']}² target ({n} tokens) + two {s['ref']}² references ({refs[0]} tokens each), "
          f"{text} text tokens, LoRA rank {cfg.model.lora_rank}; median of {a.repeat})\n")
    print("| step | s/step | ratio | over plain | routing FLOPs share | peak GiB |\n|---|---|---|---|---|---|")
    for k, (_, layers) in variants.items():
        share = routing_share(cfg, text, n, refs, cfg.data.batch_size, len(layers)) if layers else 0.0
        mem = f"{peaks[k]:.2f}" if k in peaks else "n/a"
        print(f"| {k} | {med[k]:.3f} | {ratio[k]:.3f} | {(ratio[k] - 1) * 100:+.1f}% | "
              f"{share * 100:.2f}% | {mem} |")
    if a.profile:
        profile_delta(runs, list(runs)[0], list(runs)[-1])


if __name__ == "__main__":
    main()
