"""Section 1: the official forward vs ``dreamo_core`` vs our ComfyUI nodes (SDPA), one DreamO step on the same
seeded weights made on the device, each variant in its own subprocess, rounds in rotated order
(``bench.bench_official``)."""

from __future__ import annotations

import sys
from pathlib import Path

from bench import bench_official as B
from bench.common import cell, size_spec
from bench.flops import tokens_for
from bench.gpu_suite.section import Part, Section, comfyui_missing, start_s, step_s, table
from bench.gpu_suite.settings import Settings


def official_missing(s: Settings) -> str | None:
    if not Path(s.official_path, "dreamo", "dreamo_pipeline.py").is_file():
        return f"no official checkout (DREAMO_OFFICIAL_PATH / --official-path: {s.official_path!r})"
    if not (s.official_python or s.official_pythonpath):
        return ("no interpreter for the official code (DREAMO_OFFICIAL_PYTHON or DREAMO_OFFICIAL_PYTHONPATH: "
                "diffusers 0.33.1 + transformers 4.45.2)")
    return None


def variants(s: Settings) -> tuple[list[str], list[str]]:
    """The variants that can run here, and a note for each one that cannot."""
    candidates = [("official", official_missing(s)), ("core", None), ("comfyui-sdpa", comfyui_missing(s))]
    return ([name for name, missing in candidates if not missing],
            [f"{name} skipped: {missing}" for name, missing in candidates if missing])


def argv_of(s: Settings, names: list[str]) -> list[str]:
    return ["--size", s.size, "--device", s.device, "--dtype", s.dtype, "--out", str(s.out), "--refs", str(s.refs),
            "--ref-res", str(s.ref_res), "--text-tokens", str(s.text_tokens), "--repeat", str(s.repeat),
            "--rounds", str(s.rounds), "--variants", ",".join(names), "--weights-on-device",
            "--official-path", s.official_path, "--official-python", s.official_python or sys.executable,
            "--official-pythonpath", s.official_pythonpath, "--comfyui-path", s.comfyui_path]


def run(s: Settings, deadline: float | None) -> dict:
    names, notes = variants(s)
    argv = argv_of(s, names)
    a = B.arguments().parse_args(argv)
    c = B.compare(a, argv, names, keep_going=True, deadline=deadline)
    notes += [f"{v} failed: {why}" for v, why in c.failed.items()]
    if c.rounds < s.rounds:
        notes.append(f"time budget: {c.rounds} of {s.rounds} rounds")
    return {"rows": B.summary(a, c), "notes": notes, "rounds": c.rounds}


def estimate(s: Settings) -> float:
    names, _ = variants(s)
    tokens = tokens_for(s.out, s.out) + s.refs * tokens_for(s.ref_res, s.ref_res)
    one = step_s(s, size_spec(s.size), tokens) * (1 + s.repeat)
    return s.rounds * sum(start_s(s, "comfyui" if v.startswith("comfyui") else "diffusers") + one for v in names)


def plan(s: Settings) -> str:
    names, notes = variants(s)
    return (f"one DreamO step, {s.size} {s.dtype}, {s.out}² + {s.refs} x {s.ref_res}² refs, {s.text_tokens} text "
            f"tokens: {', '.join(names)}; {s.repeat} timed calls after a warm-up x {s.rounds} rotated rounds"
            + "".join(f"; {n}" for n in notes))


def markdown(part: str, result: dict) -> list[str]:
    rows = result["rows"]
    base = rows[0]["base"] if rows else "official"
    return table(["variant", "stack", "step ms", f"speed-up vs {base}", "peak GiB (GPU: max allocated, CPU: RSS)",
                  "max abs diff vs official", "max abs diff vs core", "share of bf16 peak"],
                 [[r["variant"], r["stack"], f"{r['step_ms']:.1f}", f"{r['speedup']:.2f}", f"{r['peak_gib']:.2f}",
                   cell(r["diff_vs_official"], ".2e"), cell(r["diff_vs_core"], ".2e"), cell(r["peak_share"], ".1%")]
                  for r in rows])


SECTION = Section("official", "1. Official vs ours, one DreamO step", plan, estimate,
                  lambda s: [Part("step", run)], markdown)
