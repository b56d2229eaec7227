"""Section 2: what DreamO adds over plain FLUX at DreamO's token count, 0 / 1 / 2 / 4 references
(``bench.bench_diffusers`` for ``dreamo_core``, ``bench.bench_comfy`` for our nodes; the CPU tables' columns)."""

from __future__ import annotations

from bench import bench_diffusers
from bench.common import BENCH_DTYPE_BY_NAME, HEADER, overhead_cells, size_spec
from bench.flops import tokens_for
from bench.gpu_suite.section import Part, Section, comfyui_missing, start_s, step_s, table
from bench.gpu_suite.settings import Settings


def core(s: Settings, deadline: float | None) -> dict:
    rows = bench_diffusers.run(s.size, s.device, BENCH_DTYPE_BY_NAME[s.dtype], s.overhead_grid, s.repeat,
                               s.text_tokens, deadline=deadline)
    return {"rows": rows, "notes": skipped_points(s, rows)}


def comfyui(s: Settings, deadline: float | None) -> dict:
    from bench import bench_comfy

    rows = bench_comfy.run(s.size, s.device, BENCH_DTYPE_BY_NAME[s.dtype], s.overhead_grid, s.repeat, s.text_tokens,
                           deadline=deadline, comfy_path=s.comfyui_path)
    return {"rows": rows, "notes": skipped_points(s, rows)}


def skipped_points(s: Settings, rows: list[dict]) -> list[str]:
    left = bench_diffusers.GRIDS[s.overhead_grid][len(rows):]
    return [f"time budget: grid points {left} not measured"] if left else []


def parts(s: Settings) -> list[Part]:
    return [Part("dreamo_core", core), Part("ComfyUI nodes", comfyui, comfyui_missing(s))]


def estimate(s: Settings) -> float:
    spec, grid = size_spec(s.size), bench_diffusers.GRIDS[s.overhead_grid]
    # plain, DreamO and same-token plain: one warm-up and ``repeat`` rounds each (plain is the cheapest, count it
    # at DreamO's tokens: an upper bound)
    calls = sum(3 * (1 + s.repeat) * step_s(s, spec, tokens_for(o, o) + n * tokens_for(r, r)) for o, n, r in grid)
    return sum(start_s(s, "comfyui" if p.name.startswith("ComfyUI") else "diffusers") + calls
               for p in parts(s) if p.skip is None)


def plan(s: Settings) -> str:
    grid = bench_diffusers.GRIDS[s.overhead_grid]
    return (f"plain vs DreamO vs same-token plain at (output, refs, ref res) {grid}, {s.size} {s.dtype}, "
            f"{s.repeat} rotated rounds: " + ", ".join(p.name + (f" (skipped: {p.skip})" if p.skip else "")
                                                      for p in parts(s)))


def markdown(part: str, result: dict) -> list[str]:
    return table(HEADER, [overhead_cells(r) for r in result["rows"]])


SECTION = Section("overhead", "2. DreamO overhead over plain FLUX at DreamO's token count", plan, estimate, parts,
                  markdown)
