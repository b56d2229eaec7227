"""Section 3: reference strength 0.5 against 1 (the bias as SDPA's mask vs the flash path), and what a mask-free
strength split at the reference keys would give (``bench.bench_strength``)."""

from __future__ import annotations

from bench import bench_strength
from bench.common import BENCH_DTYPE_BY_NAME, fmt_mem, size_spec
from bench.flops import tokens_for
from bench.gpu_suite.section import Part, Section, start_s, step_s, table
from bench.gpu_suite.settings import Settings


def run(s: Settings, deadline: float | None) -> dict:
    rows = bench_strength.run(s.size, s.device, BENCH_DTYPE_BY_NAME[s.dtype], s.strength_grid, s.repeat,
                              s.text_tokens, deadline=deadline)
    left = bench_strength.GRIDS[s.strength_grid][len(rows):]
    return {"rows": rows, "notes": [f"time budget: grid points {left} not measured"] if left else []}


def estimate(s: Settings) -> float:
    spec = size_spec(s.size)
    steps = sum(2 * (1 + s.repeat) * step_s(s, spec, tokens_for(o, o) + n * tokens_for(r, r))
                for o, n, r in bench_strength.GRIDS[s.strength_grid])
    return start_s(s, "diffusers") + 1.2 * steps  # + the attention calls (a block's share of a step each)


def plan(s: Settings) -> str:
    return (f"step ms and peak GiB at strength {bench_strength.STRENGTH} vs 1 at (output, refs, ref res) "
            f"{bench_strength.GRIDS[s.strength_grid]}, {s.size} {s.dtype}; one attention call unmasked / masked / "
            "split at the reference keys (exactness and the step it would give)")


def markdown(part: str, result: dict) -> list[str]:
    w = bench_strength.STRENGTH
    return table(["output", "refs", "ref res", "strength 1 ms", f"strength {w} ms", "ratio", "strength 1 GiB",
                  f"strength {w} GiB", "attention unmasked ms", "masked ms", "split ms", "max abs split - mask",
                  "split step ms (projected)", "split step / strength 1"],
                 [[str(r["output"]), str(r["refs"]), str(r["ref_res"]), f"{r['strength_1_ms']:.1f}",
                   f"{r['strength_ms']:.1f}", f"{r['ratio']:.3f}", fmt_mem(r["strength_1_gib"]), fmt_mem(r["strength_gib"]),
                   f"{r['attn_unmasked_ms']:.3f}", f"{r['attn_mask_ms']:.3f}", f"{r['attn_split_ms']:.3f}",
                   f"{r['split_vs_mask_max_abs_diff']:.1e}", f"{r['split_step_ms']:.1f}", f"{r['split_ratio']:.3f}"]
                  for r in result["rows"]])


SECTION = Section("strength", "3. Reference strength 0.5 vs 1, and a mask-free alternative", plan, estimate,
                  lambda s: [Part("dreamo_core", run)], markdown)
