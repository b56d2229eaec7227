"""One DreamO denoising step, side by side: the official implementation, our ``dreamo_core`` forward and our
ComfyUI nodes, on the same random weights and the same tokens, in one run.

    DREAMO_OFFICIAL_PATH=/path/to/DreamO DREAMO_OFFICIAL_PYTHON=/path/to/venv-official/bin/python \\
    COMFYUI_PATH=/path/to/ComfyUI python -m bench.bench_official --size width --dtype fp32 \\
        --out 256 --ref-res 256 --text-tokens 128 --repeat 2 --rounds 2            # CPU, as in README
    ... python -m bench.bench_official --size full --device cuda --dtype bf16 --out 1024 --refs 2 --ref-res 512

Variants (``--variants``, default all four), each in a subprocess of its own, so that its peak memory is its own
and the official import (which replaces diffusers' ``FluxTransformer2DModel.forward`` for the whole process) never
meets the others:

- ``official``: the step of the official ``DreamOPipeline.__call__`` (ids, embeddings and the transformer call as
  written there) with the official ``flux_transformer_forward``, imported from the checkout the user points at
  (``--official-path`` / ``DREAMO_OFFICIAL_PATH``, the folder holding ``dreamo/dreamo_pipeline.py``; never copied
  here). That forward predates the current diffusers block API (on diffusers 0.42 it fails with
  ``FluxSingleTransformerBlock.forward() missing ... 'encoder_hidden_states'``), so it runs under its own
  interpreter (``--official-python`` / ``DREAMO_OFFICIAL_PYTHON``; default: this one): a plain virtualenv (not
  ``--system-site-packages``) with the diffusers and transformers the official requirements pin, e.g.

      python -m venv /path/to/venv-official
      /path/to/venv-official/bin/pip install torch==2.13.0 diffusers==0.33.1 transformers==4.45.2 einops safetensors

  (a CPU torch; never torchvision), or this interpreter with ``--official-pythonpath`` /
  ``DREAMO_OFFICIAL_PYTHONPATH``: folders that become the official subprocess's whole PYTHONPATH, holding those
  versions (``pip install --target``; what ``bench/gpu_suite.sh`` does where no venv can be made). The official ``dreamo/utils.py`` imports ``torchvision.utils`` and ``cv2``,
  neither used by a step: the ComfyUI harness's stand-in (``bench.comfy_harness.stand_ins``), which fails if
  called, takes the place of whichever is absent.
- ``core``: ``dreamo_core``'s forward on the diffusers of this interpreter.
- ``comfyui``: ComfyUI's own FLUX (``--comfyui-path`` / ``COMFYUI_PATH``), built by ComfyUI's model detection
  from the same diffusers-format weights (``convert_diffusers_mmdit``), patched by our Load DreamO LoRA (tables
  only) and Apply DreamO Conditioning nodes; one guided model call through ComfyUI's real CFGGuider (cfg 1) per
  step. The velocity compared is ``(x - denoised) / sigma`` of ComfyUI's denoised output. ComfyUI's attention as
  it picks it (on a CPU: its sliced softmax, ``attention_sub_quad``).
- ``comfyui-sdpa``: the same with ComfyUI's ``--use-pytorch-cross-attention`` (SDPA; ComfyUI's default on CUDA).

The weights are one seeded diffusers-format state dict (``bench.common.build_transformer``, built on ``--device``),
written once to a temporary safetensors file (under ``$TMPDIR``; ~3.9 GB at ``width`` fp32, ~24 GB at ``full``
bf16) that every variant loads; with ``--weights-on-device`` every variant makes the same seeded weights on
``--device`` itself instead (``bench.seeded_weights``: no file; ComfyUI converts them as it converts a diffusers
file). Tokens and embedding tables come from one seeded generator. Prints per variant:
median step time (``--repeat`` calls after a warm-up) and, on CPU, median process CPU time (what a shared
machine's other load barely changes), each as a speed-up over the first variant (median of per-round ratios);
peak memory during the step (GPU: ``torch.cuda.max_memory_allocated``; CPU: the subprocess's peak RSS counted
from after the weights are loaded, i.e. resident weights + what the step allocates); max abs difference of the
target velocity to the official and to the core output; on a GPU, the share of the card's dense bf16 peak that
the step's model FLOPs (``bench.flops``) over the step time achieve. GPU step times are CUDA-event times. ``--rounds N`` runs the variants N times in rotated
order. ``--size width``: FLUX.1-dev's width (hidden 3072, 24 heads x 128, T5 4096) with 2 + 2 blocks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench import comfy_harness as h
from bench.common import (
    BENCH_DTYPE_BY_NAME,
    SIZES,
    WEIGHTS_SEED,
    build_transformer,
    cell,
    clocked,
    peak_rss_gib,
    print_table,
    reset_peak_rss,
    size_spec,
)
from bench.flops import card_bf16_peak, forward_flops, peak_share, tokens_for
from dreamo_core.conditioning.embeddings import ConditionEmbeddings

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("official", "core", "comfyui", "comfyui-sdpa")
SIGMA, GUIDANCE = 0.5, 3.5
OFFICIAL_ABSENT = ("torchvision", "cv2")  # imported by the official dreamo/utils.py, used by no step


def inputs(a: argparse.Namespace) -> dict:
    """Seeded tokens of one step: target, references, text, tables (identical in every subprocess)."""
    spec, dtype, g = size_spec(a.size), BENCH_DTYPE_BY_NAME[a.dtype], torch.Generator().manual_seed(1)
    hidden = spec.hidden_size
    grid, rgrid = (a.out // 16, a.out // 16), (a.ref_res // 16, a.ref_res // 16)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(a.device, dtype)

    return dict(grid=grid, rgrid=rgrid, latents=rand(1, grid[0] * grid[1], 64),
                refs=[rand(1, rgrid[0] * rgrid[1], 64) for _ in range(a.refs)],
                embeds=rand(1, a.text_tokens, spec.t5_dim), pooled=rand(1, spec.pooled_dim),
                tables=ConditionEmbeddings(rand(2, hidden), rand(10, hidden)))


def write_weights(a: argparse.Namespace) -> None:
    """Child process: the seeded diffusers-format transformer state dict, in the run's dtype, to ``a.weights``."""
    from safetensors.torch import save_file

    model = build_transformer(a.size, a.device, BENCH_DTYPE_BY_NAME[a.dtype])
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, a.weights)


def diffusers_transformer_from_weights(a: argparse.Namespace) -> torch.nn.Module:
    """This interpreter's diffusers ``FluxTransformer2DModel`` of ``a.size``, built on the meta device and given
    the weights of ``a.weights`` (strict: every key, every shape), or with ``a.weights_on_device`` the seeded
    weights made on ``a.device``."""
    from safetensors.torch import load_file

    from dreamo_core.generator.tiny import flux_transformer

    if a.weights_on_device:
        return build_transformer(a.size, a.device, BENCH_DTYPE_BY_NAME[a.dtype])
    model = flux_transformer(0, "meta", None, **SIZES[a.size])
    model.load_state_dict(load_file(a.weights, device=a.device), strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"bench_official: tensors left without weights: {left[:5]}")
    return model.eval().requires_grad_(False)


Timed = tuple[list[tuple[float, float]], torch.Tensor]  # ((wall s, process CPU s) of each call, last output)


def time_calls(call: Callable[[], torch.Tensor], a: argparse.Namespace) -> Timed:
    """One warm-up, then ``a.repeat`` timed calls: wall (GPU: CUDA-event) and process CPU seconds of each, and the
    last output. The CPU time (all threads of this process) is what a shared machine's other load barely changes."""
    out = call()
    times = []
    for _ in range(a.repeat):
        c0 = time.process_time()
        seconds, out = clocked(call, a.device)
        times.append((seconds, time.process_time() - c0))
    return times, out


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_rss()


def official_run(a: argparse.Namespace, x: dict) -> Timed:
    """The step of the official ``DreamOPipeline.__call__``: its ids (``_prepare_latent_image_ids``), its
    embeddings (target ``task[1]``, reference ``task[0] + idx[k]``) and its transformer call."""
    sys.path.insert(0, a.official_path)
    import diffusers.pipelines.flux.pipeline_flux  # noqa: F401  (libraries decide what exists before the stand-ins)

    h.stand_in_for_absent(OFFICIAL_ABSENT)
    # importing the official pipeline replaces FluxTransformer2DModel.forward (in this process only)
    from dreamo.dreamo_pipeline import DreamOPipeline

    dtype, dev = BENCH_DTYPE_BY_NAME[a.dtype], x["latents"].device
    model = diffusers_transformer_from_weights(a)
    ids_of = DreamOPipeline._prepare_latent_image_ids
    ids = [ids_of(1, *x["grid"], dev, dtype)]
    emb = [x["tables"].task[1].expand(1, x["latents"].shape[1], -1)]
    h0, w0 = x["grid"]
    for k, ref in enumerate(x["refs"]):
        ids.append(ids_of(1, *x["rgrid"], dev, dtype, h0, w0))
        h0, w0 = h0 + x["rgrid"][0], w0 + x["rgrid"][1]
        emb.append((x["tables"].task[0] + x["tables"].idx[k + 1]).expand(1, ref.shape[1], -1))
    img_ids, embeddings = torch.cat(ids, dim=1), torch.cat(emb, dim=1)
    txt_ids = torch.zeros(x["embeds"].shape[1], 3, device=dev, dtype=dtype)
    hidden = torch.cat([x["latents"], *x["refs"]], dim=1)
    reset_peak(a.device)

    def step():
        return model(hidden_states=hidden, timestep=torch.full((1,), SIGMA, device=dev, dtype=dtype),
                     guidance=torch.full((1,), GUIDANCE, device=dev), pooled_projections=x["pooled"],
                     encoder_hidden_states=x["embeds"], txt_ids=txt_ids, img_ids=img_ids, return_dict=False,
                     embeddings=embeddings)[0][:, : x["latents"].shape[1]]
    return time_calls(step, a)


def core_run(a: argparse.Namespace, x: dict) -> Timed:
    from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward

    dtype, dev = BENCH_DTYPE_BY_NAME[a.dtype], x["latents"].device
    model = diffusers_transformer_from_weights(a)
    refs = [ReferenceTokens(r, x["rgrid"], k + 1) for k, r in enumerate(x["refs"])]
    reset_peak(a.device)
    return time_calls(lambda: dreamo_transformer_forward(
        model, x["latents"], x["grid"], refs, torch.full((1,), SIGMA, device=dev, dtype=dtype),
        torch.full((1,), GUIDANCE, device=dev), x["pooled"], x["embeds"], x["tables"]), a)


def comfy_flux_from_weights(a: argparse.Namespace):
    """ComfyUI's FLUX ModelPatcher from the diffusers-format weights: keys converted and the config detected by
    ComfyUI itself (as for a diffusers file), weights and compute in the run's dtype."""
    import comfy.model_detection
    import comfy.model_patcher
    from safetensors.torch import load_file

    from bench.seeded_weights import seeded_state_dict
    from dreamo_core.generator.tiny import flux_transformer

    if a.weights_on_device:
        diffusers_sd = seeded_state_dict(flux_transformer(0, "meta", None, **SIZES[a.size]), WEIGHTS_SEED, a.device,
                                         BENCH_DTYPE_BY_NAME[a.dtype])
    else:
        diffusers_sd = load_file(a.weights, device=a.device)
    sd = comfy.model_detection.convert_diffusers_mmdit(diffusers_sd, "")
    del diffusers_sd
    unet_config = comfy.model_detection.detect_unet_config(sd, "")
    if unet_config is None or unet_config.get("image_model") != "flux":
        raise RuntimeError("bench_official: ComfyUI did not detect the converted weights as FLUX")
    # detection takes FLUX.1-dev's widths, heads and RoPE axes as given (0.3.64: hidden 3072, T5 4096 too): the
    # same as the weights' for --size width / full; the smaller sizes state theirs
    sizes = size_spec(a.size).comfy_flux_params()
    detected = {k: unet_config.get(k) for k in sizes}
    if a.size in ("width", "full") and detected != sizes:
        raise RuntimeError(f"bench_official: ComfyUI detected {detected}, the weights are {sizes}")
    unet_config.update(sizes)
    mc = comfy.model_detection.model_config_from_unet_config(unet_config, sd)
    mc.set_inference_dtype(BENCH_DTYPE_BY_NAME[a.dtype], None)
    base = mc.get_model({}, device=a.device)
    base.load_model_weights(sd, "")
    left = list(sd)  # load_model_weights pops every key it uses
    if left:
        raise RuntimeError(f"bench_official: weights ComfyUI did not take: {left[:5]}")
    base.to(a.device)
    dev = torch.device(a.device)
    return comfy.model_patcher.ModelPatcher(base, load_device=dev, offload_device=dev)


def comfyui_run(a: argparse.Namespace, x: dict) -> Timed:
    """Our nodes on ComfyUI's FLUX: Load DreamO LoRA (tables only) + Apply DreamO Conditioning, then one guided
    model call (cfg 1, ``h.guided_call``) per timed call. Tokens are unpacked to ComfyUI latents (references as raw
    VAE latents, which ComfyUI's FLUX normalises itself); the output is packed back to target velocity tokens."""
    from safetensors.torch import save_file

    from dreamo_core.conditioning.packing import denormalize_latents, pack_latents, unpack_latents
    from dreamo_core.spec import FLUX_DEV

    # ComfyUI picks its attention at import: on a CPU its default is a sliced softmax (baddbmm + softmax + bmm);
    # "comfyui-sdpa" is ComfyUI started with --use-pytorch-cross-attention (SDPA, its default on CUDA)
    h.setup_comfy(a.comfyui_path, use_pytorch_cross_attention=a.variant == "comfyui-sdpa",
                  cpu=not a.device.startswith("cuda"))
    model = comfy_flux_from_weights(a)
    tables_dir = Path(a.save).parent / "loras"
    tables_dir.mkdir(exist_ok=True)
    save_file({"dreamo_task_embedding.weight": x["tables"].task.contiguous(),
               "dreamo_idx_embedding.weight": x["tables"].idx.contiguous()}, str(tables_dir / "tables.safetensors"))
    h.use_loras_folder(tables_dir)
    dreamo_model = h.with_dreamo_tables(model, "tables.safetensors")
    refs = h.dreamo_refs([denormalize_latents(unpack_latents(r.float(), *x["rgrid"]), FLUX_DEV.latent_shift,
                                              FLUX_DEV.latent_scale) for r in x["refs"]])
    cond = [[x["embeds"], {"pooled_output": x["pooled"], "guidance": GUIDANCE}]]
    patched, positive = h.run_node("DreamO_ApplyConditioning", model=dreamo_model, positive=cond, references=refs)
    latent = unpack_latents(x["latents"].float(), *x["grid"])

    def step(denoise, noised: torch.Tensor) -> Timed:
        x_in = latent.to(noised.device)  # the bench's own target tokens, not ComfyUI's noised zeros
        reset_peak(a.device)
        times, denoised = time_calls(lambda: denoise(x_in), a)
        return times, pack_latents((x_in - denoised.float()) / SIGMA)

    with torch.no_grad():
        return h.guided_call(patched, positive, cond, torch.zeros_like(latent), SIGMA, 1.0, step)


def kitchen_backends() -> str:
    """'; comfy-kitchen VERSION: its available backends' where ComfyUI uses it (0.33 runs its RoPE through it: the
    CUDA backend's kernels or the eager torch ops), else ''."""
    import importlib.metadata

    try:
        import comfy_kitchen
    except ImportError:
        return ""
    names = ", ".join(name for name, info in comfy_kitchen.list_backends().items()
                      if info.get("available") and not info.get("disabled"))
    return f"; comfy-kitchen {importlib.metadata.version('comfy-kitchen')}: {names}"


def stack(variant: str) -> str:
    """What this subprocess runs on, for the table."""
    if variant.startswith("comfyui"):
        import comfy.ldm.modules.attention as attention
        import comfyui_version

        return (f"torch {torch.__version__}, ComfyUI {comfyui_version.__version__} "
                f"({attention.optimized_attention.__name__}{kitchen_backends()})")
    import diffusers

    return f"torch {torch.__version__}, diffusers {diffusers.__version__}"


def run_variant(a: argparse.Namespace) -> None:
    """Child process: time one variant, save its target velocity, print one JSON line."""
    from safetensors.torch import save_file

    torch.set_grad_enabled(False)
    x = inputs(a)
    run = {"official": official_run, "core": core_run}.get(a.variant, comfyui_run)
    times, out = run(a, x)
    peak = torch.cuda.max_memory_allocated() / 2**30 if a.device.startswith("cuda") else peak_rss_gib()
    save_file({"out": out.float().cpu().contiguous()}, a.save)
    device_name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    print(json.dumps({"seconds": statistics.median(t[0] for t in times),
                      "cpu_seconds": statistics.median(t[1] for t in times), "peak_gib": peak,
                      "stack": stack(a.variant), "threads": torch.get_num_threads(), "device_name": device_name}))


def arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=list(SIZES), default="small")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(BENCH_DTYPE_BY_NAME), default="fp32")
    p.add_argument("--out", type=int, default=512, help="output side in pixels")
    p.add_argument("--refs", type=int, default=1)
    p.add_argument("--ref-res", type=int, default=512)
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3, help="timed calls per variant after one warm-up")
    p.add_argument("--rounds", type=int, default=1, help="runs of every variant, in rotated order")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    p.add_argument("--official-path", default=os.environ.get("DREAMO_OFFICIAL_PATH", ""),
                   help="checkout of bytedance/DreamO (default: $DREAMO_OFFICIAL_PATH)")
    p.add_argument("--official-python", default=os.environ.get("DREAMO_OFFICIAL_PYTHON", sys.executable),
                   help="interpreter of the official variant (default: $DREAMO_OFFICIAL_PYTHON, else this one)")
    p.add_argument("--official-pythonpath", default=os.environ.get("DREAMO_OFFICIAL_PYTHONPATH", ""),
                   help="the official subprocess's whole PYTHONPATH, e.g. a pip --target folder with diffusers 0.33.1 "
                        "and transformers 4.45.2 (default: $DREAMO_OFFICIAL_PYTHONPATH; empty: inherited)")
    p.add_argument("--comfyui-path", default=os.environ.get("COMFYUI_PATH", ""),
                   help="ComfyUI checkout of the comfyui variant (default: $COMFYUI_PATH)")
    p.add_argument("--weights-on-device", action="store_true",
                   help="every variant makes the seeded weights on --device itself (no weights file)")
    p.add_argument("--variant", choices=(*VARIANTS, "weights"), help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    return p


def checked_variants(a: argparse.Namespace) -> list[str]:
    """The variants asked for, or SystemExit(2) naming the argument that is wrong or missing."""
    names = [v.strip() for v in a.variants.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise SystemExit(f"bench_official: --variants {a.variants!r}: expected a comma-separated subset of "
                         f"{', '.join(VARIANTS)}")
    if "official" in names and not Path(a.official_path, "dreamo", "dreamo_pipeline.py").is_file():
        raise SystemExit("bench_official: the official variant needs --official-path (or DREAMO_OFFICIAL_PATH): a "
                         f"checkout of bytedance/DreamO holding dreamo/dreamo_pipeline.py; got {a.official_path!r}")
    if any(v.startswith("comfyui") for v in names) and not Path(a.comfyui_path, "comfy", "samplers.py").is_file():
        raise SystemExit("bench_official: the comfyui variant needs --comfyui-path (or COMFYUI_PATH): a ComfyUI "
                         f"checkout; got {a.comfyui_path!r}")
    if a.repeat < 1 or a.rounds < 1:
        raise SystemExit("bench_official: --repeat and --rounds must be at least 1")
    return names


def child(a: argparse.Namespace, argv: list[str], variant: str, tmp: Path) -> dict:
    """Run one subprocess of ``variant`` (its interpreter and, for the official one, ``a.official_pythonpath`` as
    its whole PYTHONPATH; cwd the repo root); its JSON line, or SystemExit with the end of its stderr."""
    python = a.official_python if variant == "official" else sys.executable
    env = {**os.environ, "PYTHONPATH": a.official_pythonpath} if variant == "official" and a.official_pythonpath else None
    save = tmp / f"{variant}.safetensors"
    cmd = [python, "-m", "bench.bench_official", *argv, "--variant", variant, "--weights", str(tmp / "weights.safetensors"),
           "--save", str(save), "--official-path", a.official_path, "--comfyui-path", a.comfyui_path]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode:
        raise SystemExit(f"bench_official: the {variant} subprocess ({python}) failed:\n{done.stderr[-3000:]}")
    if variant == "weights":
        return {}
    from safetensors.torch import load_file

    return {**json.loads(done.stdout.strip().splitlines()[-1]), "out": load_file(str(save))["out"]}


@dataclass
class Comparison:
    runs: dict[str, list[dict]]  # variant -> its subprocess's results, one per round it ran
    failed: dict[str, str] = field(default_factory=dict)  # variant -> why its subprocess failed (keep_going)
    rounds: int = 0  # rounds run to the end


def compare(a: argparse.Namespace, argv: list[str], names: list[str], keep_going: bool = False,
            deadline: float | None = None) -> Comparison:
    """Every variant of ``names`` in its own subprocess, ``a.rounds`` times in rotated order. ``keep_going``: a
    variant whose subprocess fails is recorded and left out of later rounds (else SystemExit). ``deadline``
    (``time.monotonic()``): no round starts after it."""
    c = Comparison({v: [] for v in names})
    with tempfile.TemporaryDirectory() as tmp:
        if not a.weights_on_device:
            child(a, argv, "weights", Path(tmp))
        for r in range(a.rounds):
            if deadline is not None and time.monotonic() > deadline:
                break
            for v in names[r % len(names):] + names[: r % len(names)]:
                if v in c.failed:
                    continue
                try:
                    c.runs[v].append(child(a, argv, v, Path(tmp)))
                except SystemExit as e:
                    if not keep_going:
                        raise
                    c.failed[v] = str(e)
                    continue
                print(f"  {v}: {c.runs[v][-1]['seconds'] * 1e3:.0f} ms", file=sys.stderr, flush=True)
            c.rounds += 1
    return c


def step_macs(a: argparse.Namespace) -> float:
    """Model MACs of the step (``bench.flops``: blocks + embedders) at the run's size and tokens."""
    image = tokens_for(a.out, a.out) + a.refs * tokens_for(a.ref_res, a.ref_res)
    return forward_flops(image, a.text_tokens, size_spec(a.size)).total


def summary(a: argparse.Namespace, c: Comparison) -> list[dict]:
    """One dict per variant that ran: median step s (and CPU s), speed-ups over the first variant that ran
    (median of per-round ratios), peak GiB, max abs differences to official / core, share of the card's bf16 peak
    (CUDA; None where the card is unknown)."""
    ran = {v: rs for v, rs in c.runs.items() if rs}
    if not ran:
        return []
    base = next(iter(ran))
    outs = {v: rs[-1]["out"] for v, rs in ran.items()}
    macs = step_macs(a)
    rows = []
    for v, rs in ran.items():
        step = statistics.median(r["seconds"] for r in rs)
        peak_flops = card_bf16_peak(rs[-1].get("device_name", ""))
        rows.append({
            "variant": v, "stack": rs[-1]["stack"], "step_ms": step * 1e3, "base": base,
            "speedup": statistics.median(b["seconds"] / r["seconds"] for b, r in zip(ran[base], rs)),
            "cpu_ms": statistics.median(r["cpu_seconds"] for r in rs) * 1e3,
            "cpu_speedup": statistics.median(b["cpu_seconds"] / r["cpu_seconds"] for b, r in zip(ran[base], rs)),
            "peak_gib": max(r["peak_gib"] for r in rs),
            "diff_vs_official": (outs[v] - outs["official"]).abs().max().item() if "official" in outs else None,
            "diff_vs_core": (outs[v] - outs["core"]).abs().max().item() if "core" in outs else None,
            "peak_share": peak_share(macs, step, peak_flops) if a.device.startswith("cuda") else None,
            "threads": rs[-1]["threads"], "output_scale": outs[base].abs().max().item(),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = arguments().parse_args(argv)
    if a.variant == "weights":
        write_weights(a)
        return 0
    if a.variant:
        run_variant(a)
        return 0
    rows = summary(a, compare(a, argv, checked_variants(a)))
    base, cpu = rows[0]["base"], not a.device.startswith("cuda")
    header = ["variant", "stack", "step ms", f"speed-up vs {base}"]
    header += ["CPU ms", f"CPU-time speed-up vs {base}"] if cpu else []
    header += ["peak RSS GiB" if cpu else "GPU max allocated GiB", "max abs diff vs official", "max abs diff vs core"]
    header += [] if cpu else ["share of bf16 peak"]
    table = []
    for r in rows:
        row = [r["variant"], r["stack"], f"{r['step_ms']:.0f}", f"{r['speedup']:.2f}"]
        row += [f"{r['cpu_ms']:.0f}", f"{r['cpu_speedup']:.2f}"] if cpu else []
        row += [f"{r['peak_gib']:.2f}", cell(r["diff_vs_official"], ".2e"), cell(r["diff_vs_core"], ".2e")]
        row += [] if cpu else [cell(r["peak_share"], ".1%")]
        table.append(row)
    print_table(f"one DreamO step, {a.size} {a.dtype} {a.device} ({rows[0]['threads']} threads), {a.out}px + "
                f"{a.refs} x {a.ref_res}px refs, {a.text_tokens} text tokens; median of {a.repeat} calls x "
                f"{a.rounds} rounds; max abs {base} output {rows[0]['output_scale']:.2e}", header, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
