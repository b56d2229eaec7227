"""torch.compile through ComfyUI's own TorchCompileModel node (``set_torch_compile_wrapper`` on the whole diffusion
model), plain FLUX and DreamO with two references: graph breaks, graphs, frames compiled after the first of four
steps (recompiles), the first step's time (the compile) and the step-time speed-up over eager.

    COMFYUI_PATH=/path/to/ComfyUI python -m bench.bench_compile --size width --device cuda --dtype bf16
    COMFYUI_PATH=... python -m bench.bench_compile --size tiny --backend eager --out 128 --ref-res 64   # CPU check

Each model is compiled in a fresh Dynamo state, sampled for four guided steps at other sigmas and noises under
``torch.inference_mode`` (as ComfyUI's executor runs a prompt), then timed against its eager self, calls
interleaved (``bench.common.interleaved``, median of per-round ratios). ComfyUI runs with SDPA attention (its
default on CUDA; its CPU default reads the free memory at each call, which Dynamo guards on and recompiles for).
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

import torch

from bench import comfy_harness as h
from bench.bench_comfy import SIZES, model_call, plain_and_dreamo, setup_comfyui
from bench.common import BENCH_DTYPE_BY_NAME, interleaved, print_table

SIGMAS = (0.9, 0.7, 0.5, 0.3)  # the four counted steps


def compiled_counts(model, positive, negative, noises: list[torch.Tensor], backend: str, device: str) -> tuple:
    """(ComfyUI's TorchCompileModel on ``model``, its counts): graph breaks, unique graphs, frames compiled after
    the first step, the first step's seconds (with the compile) over ``SIGMAS`` steps of ``noises``."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    (compiled,) = h.run_node("TorchCompileModel", model=model, backend=backend)
    t0 = time.perf_counter()
    model_call(compiled, positive, negative, noises[0], device, sigma=SIGMAS[0])
    first_s, first_frames = time.perf_counter() - t0, counters["frames"]["total"]
    for sigma, noise in zip(SIGMAS[1:], noises[1:]):
        model_call(compiled, positive, negative, noise, device, sigma=sigma)
    return compiled, {"graph_breaks": sum(counters["graph_break"].values()),
                      "graphs": counters["stats"]["unique_graphs"],
                      "recompiles": counters["frames"]["total"] - first_frames, "first_step_s": first_s}


def run(size: str, device: str, dtype: torch.dtype, out: int, n_refs: int, ref_res: int, text_tokens: int,
        backend: str, repeat: int, deadline: float | None = None, fallback: str | None = None,
        comfy_path: str | None = None) -> list[dict]:
    """Plain and DreamO rows (``compiled_counts`` + eager / compiled ms and the speed-up); prints the table. The
    DreamO row is not started after ``deadline`` (``time.monotonic()``). Where ``backend`` fails to compile, the
    model is compiled with ``fallback`` (if given) and the row says so. ComfyUI: ``comfy_path``, default $COMFYUI_PATH."""
    setup_comfyui(comfy_path, cpu=not device.startswith("cuda"), use_pytorch_cross_attention=True)
    g = torch.Generator().manual_seed(1)
    plain, dreamo_model, cond = plain_and_dreamo(size, dtype, device, text_tokens, g)
    refs = h.dreamo_refs([torch.randn(1, 16, ref_res // 8, ref_res // 8, generator=g) for _ in range(n_refs)])
    dreamo, positive = h.run_node("DreamO_ApplyConditioning", model=dreamo_model, positive=cond, references=refs)
    noises = [torch.randn(1, 16, out // 8, out // 8, generator=g) for _ in SIGMAS]
    rows = []
    with torch.inference_mode():
        for name, model, pos in (("plain FLUX", plain, cond), (f"DreamO, {n_refs} refs", dreamo, positive)):
            if rows and deadline is not None and time.monotonic() > deadline:
                break
            try:
                compiled, counts = compiled_counts(model, pos, cond, noises, backend, device)
            except Exception as e:  # e.g. inductor's Triton without a C compiler on a bare machine
                if fallback is None:
                    raise
                print(f"  {backend} failed ({type(e).__name__}: {str(e)[:300]}); {fallback} instead", file=sys.stderr)
                compiled, counts = compiled_counts(model, pos, cond, noises, fallback, device)
                counts["backend_failed"] = f"{backend}: {type(e).__name__}: {str(e)[:300]}"
            times, ratios, _ = interleaved([partial(model_call, m, pos, cond, noises[2], device, sigma=SIGMAS[2])
                                            for m in (model, compiled)], repeat)
            rows.append({"model": name, "backend": backend if "backend_failed" not in counts else fallback, **counts,
                         "eager_ms": times[0] * 1e3, "compiled_ms": times[1] * 1e3, "speedup": 1 / ratios[1]})
            print(f"  compiled {name}", file=sys.stderr, flush=True)
    print_table(f"torch.compile via TorchCompileModel ({backend}; {size}, {device}, {dtype}, {out}² + {n_refs} x "
                f"{ref_res}² refs, {text_tokens} text tokens; counts over {len(SIGMAS)} steps)",
                ["model", "backend", "graph breaks", "graphs", "recompiles after step 1", "first step s", "eager ms",
                 "compiled ms", "speed-up"],
                [[r["model"], r["backend"], str(r["graph_breaks"]), str(r["graphs"]), str(r["recompiles"]), f"{r['first_step_s']:.1f}",
                  f"{r['eager_ms']:.1f}", f"{r['compiled_ms']:.1f}", f"{r['speedup']:.2f}"] for r in rows])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=list(SIZES), default="width")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(BENCH_DTYPE_BY_NAME), default="bf16")
    p.add_argument("--backend", choices=["inductor", "cudagraphs", "eager"], default="inductor",
                   help="the node offers inductor and cudagraphs; eager checks the counts without a compiler")
    p.add_argument("--out", type=int, default=1024)
    p.add_argument("--refs", type=int, default=2)
    p.add_argument("--ref-res", type=int, default=512)
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    run(a.size, a.device, BENCH_DTYPE_BY_NAME[a.dtype], a.out, a.refs, a.ref_res, a.text_tokens, a.backend, a.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
