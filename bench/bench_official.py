"""One DreamO denoising step: the official implementation vs our ``dreamo_core`` forward, same random weights,
same tokens, in one run, each variant in its own subprocess (so peak memory is its own).

    DREAMO_OFFICIAL_PATH=/path/to/bytedance/DreamO python -m bench.bench_official --size width --dtype bf16
    DREAMO_OFFICIAL_PATH=... python -m bench.bench_official --size full --device cuda --dtype bf16

The official code is imported from the checkout the user points at (never copied here); importing its pipeline
replaces diffusers' ``FluxTransformer2DModel.forward`` for the whole process, which is one reason each variant runs
in a process of its own. Prints per variant: median step time, ratio to official, peak memory (GPU:
``torch.cuda.max_memory_allocated``; CPU: the subprocess's peak RSS) and max |difference| to the official output.

Measured here: the official ``flux_transformer_forward`` (bytedance/DreamO @ HEAD) was written for an older diffusers
and fails on diffusers 0.42 (``FluxSingleTransformerBlock.forward() missing ... 'encoder_hidden_states'``: single
blocks now take text and image separately). Run it in an environment with the diffusers the official
requirements pin; the official checkout also needs ``opencv-python``; torchvision is stubbed where absent.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import DTYPES, SIZES, build_transformer, print_table, sync
from dreamo_core.conditioning.embeddings import ConditionEmbeddings
from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward

VARIANTS = ("official", "core")


def inputs(a: argparse.Namespace, model: torch.nn.Module) -> dict:
    """Seeded tokens of one step: target, references, text, tables (identical in every subprocess)."""
    c, dtype, g = model.config, DTYPES[a.dtype], torch.Generator().manual_seed(1)
    hidden = c.num_attention_heads * c.attention_head_dim
    grid, rgrid = (a.out // 16, a.out // 16), (a.ref_res // 16, a.ref_res // 16)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(a.device, dtype)

    return dict(grid=grid, rgrid=rgrid, latents=rand(1, grid[0] * grid[1], 64),
                refs=[rand(1, rgrid[0] * rgrid[1], 64) for _ in range(a.refs)],
                embeds=rand(1, a.text_tokens, c.joint_attention_dim), pooled=rand(1, c.pooled_projection_dim),
                tables=ConditionEmbeddings(rand(2, hidden), rand(10, hidden)))


def stub_torchvision_utils() -> None:
    """The official ``dreamo/utils.py`` imports ``torchvision.utils.make_grid`` (unused by a step); where torchvision
    is absent (CPU machines here: its wheels pull a CUDA torch) a stub that fails if called stands in."""
    import importlib.util
    import types

    if importlib.util.find_spec("torchvision") is not None:
        return

    def make_grid(*_args, **_kwargs):
        raise RuntimeError("torchvision is not installed (bench stub)")

    tv, tv_utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")
    tv_utils.make_grid, tv.utils = make_grid, tv_utils
    sys.modules.setdefault("torchvision", tv)
    sys.modules.setdefault("torchvision.utils", tv_utils)


def official_step(model: torch.nn.Module, x: dict, dtype: torch.dtype):
    """The step of the official ``DreamOPipeline.__call__`` (ids, embeddings and the call as written there)."""
    sys.path.insert(0, os.environ["DREAMO_OFFICIAL_PATH"])
    stub_torchvision_utils()
    from dreamo.dreamo_pipeline import DreamOPipeline  # noqa: F401  (replaces FluxTransformer2DModel.forward)

    ids_of = DreamOPipeline._prepare_latent_image_ids
    dev = x["latents"].device
    ids = [ids_of(1, *x["grid"], dev, dtype)]
    emb = [x["tables"].task[1].expand(1, x["latents"].shape[1], -1)]
    h0, w0 = x["grid"]
    for k, ref in enumerate(x["refs"]):
        ids.append(ids_of(1, *x["rgrid"], dev, dtype, h0, w0))
        h0, w0 = h0 + x["rgrid"][0], w0 + x["rgrid"][1]
        emb.append((x["tables"].task[0] + x["tables"].idx[k + 1]).expand(1, ref.shape[1], -1))
    img_ids = torch.cat(ids, dim=1)
    img_ids = img_ids[0] if img_ids.ndim == 3 else img_ids
    txt_ids = torch.zeros(x["embeds"].shape[1], 3, device=dev, dtype=dtype)
    embeddings = torch.cat(emb, dim=1)
    hidden = torch.cat([x["latents"], *x["refs"]], dim=1)

    def step():
        return model(hidden_states=hidden, timestep=torch.full((1,), 0.5, device=dev, dtype=dtype),
                     guidance=torch.full((1,), 3.5, device=dev), pooled_projections=x["pooled"],
                     encoder_hidden_states=x["embeds"], txt_ids=txt_ids, img_ids=img_ids, return_dict=False,
                     embeddings=embeddings)[0][:, : x["latents"].shape[1]]
    return step


def core_step(model: torch.nn.Module, x: dict, dtype: torch.dtype):
    refs = [ReferenceTokens(r, x["rgrid"], k + 1) for k, r in enumerate(x["refs"])]
    dev = x["latents"].device
    return lambda: dreamo_transformer_forward(model, x["latents"], x["grid"], refs,
                                              torch.full((1,), 0.5, device=dev, dtype=dtype),
                                              torch.full((1,), 3.5, device=dev), x["pooled"], x["embeds"], x["tables"])


def run_variant(a: argparse.Namespace) -> None:
    """Child process: time ``a.repeat`` steps of one variant, save the output, print one JSON line."""
    from safetensors.torch import save_file

    dtype = DTYPES[a.dtype]
    model = build_transformer(a.size, a.device, dtype)
    x = inputs(a, model)
    step = (official_step if a.variant == "official" else core_step)(model, x, dtype)
    times = []
    with torch.no_grad():
        out = step()  # warm-up
        for _ in range(a.repeat):
            sync(a.device)
            t0 = time.perf_counter()
            out = step()
            sync(a.device)
            times.append(time.perf_counter() - t0)
    if a.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    save_file({"out": out.float().cpu().contiguous()}, a.save)
    print(json.dumps({"seconds": statistics.median(times), "peak_gib": peak}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=list(SIZES), default="small")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--out", type=int, default=512, help="output side in pixels")
    p.add_argument("--refs", type=int, default=1)
    p.add_argument("--ref-res", type=int, default=512)
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.variant:
        run_variant(a)
        return 0
    if not Path(os.environ.get("DREAMO_OFFICIAL_PATH", ""), "dreamo", "dreamo_pipeline.py").is_file():
        print("bench_official: set DREAMO_OFFICIAL_PATH to a checkout of bytedance/DreamO "
              "(the folder holding dreamo/dreamo_pipeline.py)", file=sys.stderr)
        return 2
    from safetensors.torch import load_file

    results, outs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in VARIANTS:
            save = str(Path(tmp) / f"{v}.safetensors")
            args = [*(argv if argv is not None else sys.argv[1:]), "--variant", v, "--save", save]
            done = subprocess.run([sys.executable, "-m", "bench.bench_official", *args], capture_output=True, text=True)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return done.returncode
            results[v] = json.loads(done.stdout.strip().splitlines()[-1])
            outs[v] = load_file(save)["out"]
    base = results["official"]["seconds"]
    rows = [[v, f"{r['seconds'] * 1e3:.0f}", f"{base / r['seconds']:.3f}", f"{r['peak_gib']:.2f}",
             f"{(outs[v] - outs['official']).abs().max().item():.2e}"] for v, r in results.items()]
    mem = "GPU max allocated" if a.device.startswith("cuda") else "peak RSS"
    print_table(f"one DreamO step, {a.size} {a.dtype} {a.device}, {a.out}px + {a.refs} x {a.ref_res}px refs",
                ["variant", "ms", "speed-up vs official", f"{mem} GiB", "max |diff| vs official"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
