"""Section 4: torch.compile through ComfyUI's TorchCompileModel node, plain FLUX and DreamO: graph breaks,
recompiles over four steps, speed-up over eager (``bench.bench_compile``)."""

from __future__ import annotations

from bench.common import BENCH_DTYPE_BY_NAME, size_spec
from bench.flops import tokens_for
from bench.gpu_suite.section import Part, Section, comfyui_missing, device_kind, start_s, step_s, table
from bench.gpu_suite.settings import Settings

COMPILE_S = {"cuda": 35.0, "cpu": 4.0}  # one model's first compiled step (assumed on the GPU, measured on the CPU)


def run(s: Settings, deadline: float | None) -> dict:
    from bench import bench_compile

    fallback = "cudagraphs" if s.compile_backend == "inductor" and device_kind(s) == "cuda" else None
    rows = bench_compile.run(s.compile_size, s.device, BENCH_DTYPE_BY_NAME[s.dtype], s.out, s.refs, s.ref_res,
                             s.text_tokens, s.compile_backend, s.repeat, deadline=deadline, fallback=fallback,
                             comfy_path=s.comfyui_path)
    notes = [f"{r['model']}: {r['backend_failed']}; compiled with {r['backend']}" for r in rows if "backend_failed" in r]
    return {"rows": rows, "notes": notes + (["time budget: the DreamO model was not compiled"] if len(rows) < 2 else [])}


def estimate(s: Settings) -> float:
    if comfyui_missing(s):
        return 0.0
    tokens = tokens_for(s.out, s.out) + s.refs * tokens_for(s.ref_res, s.ref_res)
    per_model = COMPILE_S[device_kind(s)] + (3 + 2 * (1 + s.repeat)) * step_s(s, size_spec(s.compile_size), tokens)
    return start_s(s, "comfyui") + 2 * per_model


def plan(s: Settings) -> str:
    skip = comfyui_missing(s)
    return (f"TorchCompileModel ({s.compile_backend}) on plain FLUX and DreamO ({s.refs} refs), {s.compile_size} "
            f"{s.dtype}, {s.out}² + {s.refs} x {s.ref_res}²: graph breaks, graphs, recompiles over 4 steps, first "
            f"step, speed-up over eager (cudagraphs where inductor cannot compile)" + (f" (skipped: {skip})" if skip else ""))


def markdown(part: str, result: dict) -> list[str]:
    return table(["model", "backend", "graph breaks", "graphs", "recompiles after step 1", "first step s", "eager ms",
                  "compiled ms", "speed-up"],
                 [[r["model"], r["backend"], str(r["graph_breaks"]), str(r["graphs"]), str(r["recompiles"]), f"{r['first_step_s']:.1f}",
                   f"{r['eager_ms']:.1f}", f"{r['compiled_ms']:.1f}", f"{r['speedup']:.2f}"] for r in result["rows"]])


SECTION = Section("compile", "4. torch.compile (ComfyUI's TorchCompileModel)", plan, estimate,
                  lambda s: [Part("ComfyUI nodes", run, comfyui_missing(s))], markdown)
