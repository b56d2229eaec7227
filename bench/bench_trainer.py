"""Trainer step time with and without the routing losses (L_route + L_holder), in ONE run.

    python -m bench.bench_trainer                          # CPU, small model, synthetic data
    python -m bench.bench_trainer --profile                # + where the routed step's extra time goes
    python -m bench.bench_trainer --size width             # FLUX.1-dev width (D 3072, T5 4096), 1 + 1 blocks
    python -m bench.bench_trainer --size width --memory    # + peak RSS of one step, checkpointing off / on
    python -m bench.bench_trainer --t5                     # T5-XXL-width cost per placeholder caption
    python -m bench.bench_trainer --size full --device cuda --bf16   # FLUX.1-dev architecture, random weights
    python -m bench.bench_trainer --size full --device cuda --bf16 --plan --blocks 19,38 --batch 1 --refs 2
                                                            # one step's peak memory vs training.memory_plan

One model, one batch; the plain step (flow matching only) and the routed steps (routing records on one layer,
and on the layers of the size's config; then the same with gradient checkpointing, and as 2 accumulated
micro-steps of half the batch) are timed interleaved, ``--repeat`` rounds; the ratio is the median of the
per-round ratios, so machine drift hits all variants alike. A step is forward + losses + backward + AdamW.

``--memory``: one subprocess per variant (checkpointing off / on) builds the model, runs a warm-up step
(AdamW state and gradients allocated), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), runs one
step and prints VmHWM - VmRSS before the step: the step's extra resident memory (activations, gradients of
activations). glibc is told to return every block over 128 KiB to the kernel at once
(``MALLOC_MMAP_THRESHOLD_``), so freed tensors do not hide in the heap. GPU: ``max_memory_allocated``.

``--t5``: T5 at T5-XXL width (d_model 4096, d_ff 10240, 64 heads; random weights, ``--t5-layers`` layers) over
``--t5-tokens`` tokens: forward + backward to its input embeddings (what a placeholder caption costs: the rows
are trained through T5) against a plain forward (what a plain caption costs without the cache; 0 with it),
and per layer and token against the transformer step's time per block and token at the same width.

``--plan``: only one routed optimizer step with gradient checkpointing (after a warm-up step: AdamW state and
gradients allocated): its time and peak memory (GPU: ``max_memory_allocated``) next to what
``training.memory_plan.single_gpu_plan`` predicts for the same transformer, batch, references and capture layers.
``--blocks D,S`` builds D double and S single blocks (``full``: FLUX.1-dev's width, as many blocks as fit the time).

Target (issue 6): routing losses cost <= 10% over a plain flow-matching LoRA step. Next to the measured ratio the
script prints the routing maths' share of the step's FLOPs (3 x forward MACs for forward + backward), the part no
implementation can avoid.
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import clocked, profile_delta
from bench.flops import FLUX_TEXT_TOKENS, forward_flops, tokens_for
from dreamo_core.generator.flux_forward import ReferenceTokens
from dreamo_core.generator.tiny import TINY_TRANSFORMER
from dreamo_core.spec import FLUX_DEV, DreamOSpec
from training.attention_capture import layer_names, select_layers
from training.batch import Batch, make_batch, step_noise
from training.codec import PixelCodec
from training.config import TrainConfig, load_config
from training.data import BatchSampler, read_metadata
from training.model import build_model
from training.step_losses import compute_losses
from training.toy.synthetic import make_synthetic_dataset

GiB = 2**30


def model_overrides(sizes: dict) -> list[str]:
    """``--model.KEY=VALUE`` trainer overrides for the sizes of a diffusers ``FluxTransformer2DModel`` config (the
    trainer's tiny transformer always has the guidance embedding)."""
    return [f"--model.{k}={v}" for k, v in sizes.items() if k != "guidance_embeds"]


SIZES = {  # model overrides, the routing layers the size's config uses, batch / resolution
    "tiny": dict(model=[*model_overrides(dict(TINY_TRANSFORMER)), "--model.text_max_tokens=8"],
                 layers=["transformer_blocks.*"], image=64, ref=64),
    "small": dict(model=[*model_overrides(dict(num_layers=2, num_single_layers=4, attention_head_dim=64,
                                                num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=64,
                                                axes_dims_rope=[16, 24, 24])),
                         "--model.text_max_tokens=64"],
                  layers=["transformer_blocks.*"], image=256, ref=128),
    # FLUX.1-dev width (D 3072, 24 heads x 128, T5 4096), 1 double + 1 single block, small images: per-block costs
    # and the routing maths at the real width, at a size 2 CPU cores can time
    "width": dict(model=[*model_overrides(FLUX_DEV.diffusers_config(num_layers=1, num_single_layers=1)),
                         "--model.text_max_tokens=32"],
                  layers=["transformer_blocks.*"], image=128, ref=128),
    "full": dict(model=[*model_overrides(FLUX_DEV.diffusers_config()), "--model.text_max_tokens=512",
                        "--model.gradient_checkpointing=true"],
                 layers=list(FLUX_DEV.route_layers), image=512, ref=512),
}


def make_config(size: str, out: Path, data: Path, bf16: bool, batch: int = 2, blocks: tuple[int, int] | None = None,
                checkpointing: bool = False) -> TrainConfig:
    """The trainer config of ``size``; ``blocks`` (double, single) overrides its block counts."""
    s = SIZES[size]
    depth = [f"--model.num_layers={blocks[0]}", f"--model.num_single_layers={blocks[1]}"] if blocks else []
    return load_config(None, [
        f"--output_dir={out}", f"--data.datasets={{multi: '{data}'}}", f"--data.buckets=[[{s['image']}, {s['image']}]]",
        f"--data.ref_res={s['ref']}", f"--data.batch_size={batch}", "--model.lora_rank=128",
        "--data.plain_caption_prob=0.0", f"--model.bf16={str(bf16).lower()}", "--progress=false", *s["model"], *depth,
        *(["--model.gradient_checkpointing=true"] if checkpointing else []),
        "--stages=[{name: all, steps: 1000, lr: 0.0001, mixture: {multi: 1.0}}]"])


def size_layers(size: str, transformer: torch.nn.Module) -> frozenset[str]:
    """The routing layers of ``size`` that exist in ``transformer`` (fewer blocks than the size's: its first
    double block)."""
    names = set(layer_names(transformer))
    patterns = [p for p in SIZES[size]["layers"] if any(fnmatch.fnmatchcase(n, p) for n in names)]
    return select_layers(transformer, patterns or ["transformer_blocks.0"])


def routing_share(spec: DreamOSpec, text: int, n: int, refs: list[int], batch: int, n_layers: int) -> float:
    """MACs of the routing maps (reference queries x target keys, plus the softmax and means, ~2 more passes)
    over the MACs of the model forward, both x3 for forward + backward."""
    model = forward_flops(n + sum(refs), text, spec).total * batch
    route = n_layers * batch * sum(refs) * n * (spec.hidden_size + 2 * spec.num_heads)
    return route / model


def split_batch(batch: Batch, noise: torch.Tensor, t: torch.Tensor, j: int, k: int) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    """Micro-batch j of k (rows j::k), as the trainer's accumulation shards a step's batch."""
    rows = slice(j, None, k)
    refs = [ReferenceTokens(r.tokens[rows], r.grid, r.index) for r in batch.refs]
    micro = Batch(batch.latents[rows], batch.grid, refs, batch.masks[:, rows], batch.captions[rows],
                  batch.holder[rows], batch.ref_keep)
    return micro, noise[rows], t[rows]


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def setup(a: argparse.Namespace) -> tuple:
    torch.manual_seed(0)
    root = Path(tempfile.mkdtemp())
    s = SIZES[a.size]
    data = make_synthetic_dataset(root / "data", 4, seed=0, size=(s["image"], s["image"]), max_refs=a.refs,
                                  ref_size=s["ref"], fixed_refs=a.refs)
    cfg = make_config(a.size, root / "out", data, a.bf16, a.batch, a.blocks, a.plan)
    device = torch.device(a.device)
    model = build_model(cfg.model, device).to(device).train()
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-6)
    groups = {"multi": read_metadata(data, cfg.data.buckets, cfg.data.ref_res)}
    plan = BatchSampler(groups, cfg.data.batch_size, 0.0, 0).plan(0, {"multi": 1.0}, 0, 1)
    batch = make_batch(plan, PixelCodec(), cfg.data.ref_res, 0.0, device)
    noise, t = step_noise(cfg, 0, tuple(batch.latents.shape), 0, 1)
    return cfg, device, model, opt, batch, noise.to(device), t.to(device)


def step_fn(a: argparse.Namespace, model, opt, batch: Batch, noise, t, device, c: TrainConfig,
            layers: frozenset[str], ckpt: bool = False, accum: int = 1) -> Callable[[], None]:
    def run() -> None:
        if ckpt:
            model.transformer.enable_gradient_checkpointing()
        for j in range(accum):
            b, n, tt = split_batch(batch, noise, t, j, accum) if accum > 1 else (batch, noise, t)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
                losses = compute_losses(model, b, c, n, tt, layers)
            (losses["loss"] / accum).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ckpt:
            model.transformer.disable_gradient_checkpointing()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return run


def measure_step_memory(a: argparse.Namespace) -> None:
    """(subprocess) One routed step's extra resident memory, checkpointing a.step_memory; prints JSON."""
    cfg, device, model, opt, batch, noise, t = setup(a)
    layers = frozenset(select_layers(model.transformer, SIZES[a.size]["layers"]))
    route_cfg = replace(cfg, loss=replace(cfg.loss, route=0.5, holder=0.4))
    fn = step_fn(a, model, opt, batch, noise, t, device, route_cfg, layers, ckpt=a.step_memory == "on")
    fn()  # warm-up: AdamW state, gradient buffers
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        print(json.dumps({"extra_mib": (torch.cuda.max_memory_allocated() - base) / 2**20, "how": "cuda"}))
        return
    before = rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    fn()
    print(json.dumps({"extra_mib": (rss_kib("VmHWM") - before) / 1024, "how": "VmHWM - VmRSS"}))


def step_vs_plan(a: argparse.Namespace) -> dict:
    """One routed optimizer step (gradient checkpointing as ``a.plan`` configures it): after a warm-up step, the
    median seconds of ``a.repeat`` steps and their peak allocated GiB (CUDA; None on the CPU), next to
    ``single_gpu_plan``'s prediction for the same transformer, references and layers (batch 1)."""
    from training.memory_plan import single_gpu_plan

    cfg, device, model, opt, batch, noise, t = setup(a)
    layers = size_layers(a.size, model.transformer)
    route_cfg = replace(cfg, loss=replace(cfg.loss, route=0.5, holder=0.4))
    fn = step_fn(a, model, opt, batch, noise, t, device, route_cfg, layers)
    fn()  # warm-up: AdamW state, gradient buffers
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [clocked(fn, a.device)[0] for _ in range(a.repeat)]
    peak = torch.cuda.max_memory_allocated() / GiB if device.type == "cuda" else None
    c = cfg.model
    sizes = dict(num_layers=c.num_layers, num_single_layers=c.num_single_layers, attention_head_dim=c.attention_head_dim,
                 num_attention_heads=c.num_attention_heads, joint_attention_dim=c.joint_attention_dim,
                 pooled_projection_dim=c.pooled_projection_dim, axes_dims_rope=list(c.axes_dims_rope))
    plan = single_gpu_plan(sizes, a.refs, SIZES[a.size]["image"], SIZES[a.size]["ref"], layers, c.text_max_tokens,
                           c.lora_rank, c.gradient_checkpointing)
    frozen = sum(p.numel() for p in model.transformer.parameters() if not p.requires_grad)
    return {"blocks": [c.num_layers, c.num_single_layers], "batch": cfg.data.batch_size, "refs": a.refs,
            "image": SIZES[a.size]["image"], "ref": SIZES[a.size]["ref"], "text_tokens": c.text_max_tokens,
            "lora_rank": c.lora_rank, "layers": sorted(layers), "checkpointing": c.gradient_checkpointing,
            "bf16": c.uses_bf16, "step_s": statistics.median(times), "peak_gib": peak,
            "plan_weights_gib": plan.weights, "plan_training_state_gib": plan.training_state,
            "plan_activations_gib": plan.activations, "plan_total_gib": plan.total,
            "frozen_params": frozen, "plan_frozen_params": plan.frozen_params}


def memory_table(a: argparse.Namespace) -> None:
    """Peak extra memory of one step, checkpointing off / on, each in a fresh subprocess."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    got = {}
    for mode in ("off", "on"):
        cmd = [sys.executable, "-m", "bench.bench_trainer", "--size", a.size, "--device", a.device,
               "--step-memory", mode, *(["--bf16"] if a.bf16 else []), *(["--threads", str(a.threads)] if a.threads else [])]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()
        got[mode] = json.loads(out[-1])
    off, on = got["off"]["extra_mib"], got["on"]["extra_mib"]
    print(f"\n## Step memory ({a.size}, {a.device}{', bf16' if a.bf16 else ''}; {got['off']['how']}, one routed step "
          f"after a warm-up)\n\n| gradient checkpointing | extra MiB during the step |\n|---|---|\n"
          f"| off | {off:.0f} |\n| on | {on:.0f} |\n| saved | {off - on:.0f} ({(1 - on / off) * 100:.0f} %) |")


def t5_cost(a: argparse.Namespace) -> None:
    """T5-XXL-width forward + backward to the inputs vs forward only, and per layer-token vs the DiT."""
    from transformers import T5Config, T5EncoderModel

    from training.memory_plan import T5_XXL

    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(**{**T5_XXL, "num_layers": a.t5_layers})).eval().requires_grad_(False)
    embeds = torch.randn(1, a.t5_tokens, T5_XXL["d_model"]) * 0.1

    def plain() -> None:
        with torch.no_grad():
            t5(inputs_embeds=embeds)

    def held() -> None:
        x = embeds.clone().requires_grad_(True)
        t5(inputs_embeds=x)[0].square().mean().backward()

    times: dict[str, list[float]] = {"forward (plain caption, no cache)": [], "forward + backward (placeholders)": []}
    plain(), held()
    for _ in range(a.repeat):
        for k, fn in zip(times, (plain, held)):
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    per = med["forward + backward (placeholders)"] / (a.t5_layers * a.t5_tokens)
    print(f"\n## T5 at T5-XXL width ({a.t5_layers} layers, {a.t5_tokens} tokens, CPU fp32, median of {a.repeat})\n")
    print("| T5 pass | s | s per layer-token |\n|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} | {v / (a.t5_layers * a.t5_tokens):.2e} |")
    full = per * T5_XXL["num_layers"] * 512
    print(f"\nExtrapolated (linear in layers x tokens; attention is ~6 % of T5's FLOPs at 512 tokens): T5-XXL "
          f"forward + backward over 512 tokens ~ {full:.1f} s on this CPU per placeholder caption")


def arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 base + autocast (as model.bf16 in training)")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--profile", action="store_true", help="print the top ops of the routed step minus the plain one")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--memory", action="store_true", help="also measure one step's memory, checkpointing off / on")
    p.add_argument("--step-memory", choices=["off", "on"], help=argparse.SUPPRESS)  # the --memory subprocess
    p.add_argument("--t5", action="store_true", help="only the T5 cost of placeholder captions")
    p.add_argument("--t5-layers", type=int, default=2)
    p.add_argument("--t5-tokens", type=int, default=128)
    p.add_argument("--plan", action="store_true", help="only one checkpointed step's peak memory vs memory_plan's")
    p.add_argument("--blocks", type=lambda v: tuple(int(x) for x in v.split(",")), help="D,S double / single blocks")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--refs", type=int, default=2, help="references per sample")
    return p


def main(argv: list[str] | None = None) -> None:
    a = arguments().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.step_memory:
        return measure_step_memory(a)
    if a.t5:
        return t5_cost(a)
    if a.plan:
        r = step_vs_plan(a)
        print(f"\n## One checkpointed step vs training.memory_plan ({json.dumps({k: r[k] for k in ('blocks', 'batch', 'refs', 'image', 'ref', 'text_tokens')})})\n")
        print(f"step {r['step_s']:.3f} s; peak {r['peak_gib'] if r['peak_gib'] is None else round(r['peak_gib'], 2)} GiB; "
              f"plan {r['plan_total_gib']:.2f} GiB = weights {r['plan_weights_gib']:.2f} + LoRA state "
              f"{r['plan_training_state_gib']:.2f} + activations {r['plan_activations_gib']:.2f}")
        return
    s = SIZES[a.size]
    cfg, device, model, opt, batch, noise, t = setup(a)
    plain_cfg = replace(cfg, loss=replace(cfg.loss, route=0.0, holder=0.0))
    route_cfg = replace(cfg, loss=replace(cfg.loss, route=0.5, holder=0.4))
    names = sorted(select_layers(model.transformer, s["layers"]))
    all_layers = f"{len(names)} layers ({', '.join(s['layers'])})"
    variants: dict[str, tuple[TrainConfig, frozenset[str], bool, int]] = {
        "flow matching only": (plain_cfg, frozenset(), False, 1),
        f"+ L_route + L_holder, 1 layer ({names[0]})": (route_cfg, frozenset(names[:1]), False, 1),
        f"+ L_route + L_holder, {all_layers}": (route_cfg, frozenset(names), False, 1),
        f"+ routing ({all_layers}), gradient checkpointing": (route_cfg, frozenset(names), True, 1),
        f"+ routing ({all_layers}), grad_accum 2 x batch {cfg.data.batch_size // 2}": (route_cfg, frozenset(names),
                                                                                     False, 2),
    }
    runs = {k: step_fn(a, model, opt, batch, noise, t, device, c, layers, ckpt, accum)
            for k, (c, layers, ckpt, accum) in variants.items()}
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
    spec = DreamOSpec.of_diffusers_config(cfg.model)
    refs = [r.tokens.shape[1] for r in batch.refs]
    print(f"\n## Trainer step ({a.size}, {a.device}{', bf16' if a.bf16 else ''}, batch {cfg.data.batch_size}, "
          f"{s['image']}² target ({n} tokens) + two {s['ref']}² references ({refs[0]} tokens each), "
          f"{text} text tokens, LoRA rank {cfg.model.lora_rank}; median of {a.repeat})\n")
    print("| step | s/step | ratio | over plain | routing FLOPs share | peak GiB |\n|---|---|---|---|---|---|")
    for k, (_, layers, _, _) in variants.items():
        share = routing_share(spec, text, n, refs, cfg.data.batch_size, len(layers)) if layers else 0.0
        mem = f"{peaks[k]:.2f}" if k in peaks else "n/a"
        print(f"| {k} | {med[k]:.3f} | {ratio[k]:.3f} | {(ratio[k] - 1) * 100:+.1f}% | "
              f"{share * 100:.2f}% | {mem} |")
    full = SIZES["full"]
    blocks = FLUX_DEV.num_double_blocks + FLUX_DEV.num_single_blocks
    print(f"\nRouting FLOPs share at FLUX.1-dev ({blocks} blocks, {full['image']}² target + two {full['ref']}² "
          f"references, {FLUX_TEXT_TOKENS} text tokens, layers {', '.join(full['layers'])}): "
          f"{full_routing_share(len(full['layers']), full['image'], full['ref']) * 100:.2f}%")
    if a.memory:
        memory_table(a)
    if a.profile:
        profile_delta(runs, list(runs)[0], list(runs)[2])


def full_routing_share(n_layers: int, image: int, ref: int) -> float:
    """routing_share at the FLUX.1-dev sizes (spec FLUX_DEV), batch 1."""
    n, r = tokens_for(image, image), tokens_for(ref, ref)
    return routing_share(FLUX_DEV, FLUX_TEXT_TOKENS, n, [r, r], 1, n_layers)


if __name__ == "__main__":
    main()
