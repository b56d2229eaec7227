"""Every GPU figure the README lacks, in one run (bench/gpu_suite.sh runs it on the lent GPU machine):

    python -m bench.gpu_suite --dry-run                        # the plan and its time estimate, nothing run
    python -m bench.gpu_suite --out $OUT                       # FLUX.1-dev bf16 on CUDA, <= 450 s of sections
    python -m bench.gpu_suite --size tiny --device cpu --out runs/gpu_suite_tiny   # the CPU check CI runs

Sections (each in its own subprocess with its own time budget): 1. the official forward vs ``dreamo_core`` vs our
ComfyUI nodes; 2. DreamO's overhead over plain FLUX at its token count, 0 / 1 / 2 / 4 references; 3. strength
0.5 vs 1 and a mask-free alternative; 4. torch.compile through ComfyUI's TorchCompileModel; 5. a trainer step vs
the memory plan. Writes ``gpu_suite.md``, ``gpu_suite.json`` and ``console.log`` (everything printed) to ``--out``
(default: $OUT, else ./gpu_suite_out), the report after every section. A section that cannot run (no ComfyUI
tree, no official checkout, its time up) is reported as skipped with the reason. The official, ComfyUI and
official-interpreter paths come from --official-path / --comfyui-path / ... or their environment variables
(DREAMO_OFFICIAL_PATH, COMFYUI_PATH, DREAMO_OFFICIAL_PYTHON, DREAMO_OFFICIAL_PYTHONPATH).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.gpu_suite import report
from bench.gpu_suite.runner import Tee, run_section, section_budget, skipped_section, up_front_skip
from bench.gpu_suite.sections import SECTIONS
from bench.gpu_suite.settings import PRESETS, Settings, settings_for


def arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(PRESETS), default="full", help="full: FLUX.1-dev bf16; tiny: the CPU check")
    p.add_argument("--device", help="default: the size's (full: cuda, tiny: cpu)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_suite_out"))
    p.add_argument("--dry-run", action="store_true", help="print the plan and its time estimate; run nothing")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ", ".join(SECTIONS))
    p.add_argument("--budget", action="append", default=[], metavar="SECTION=SECONDS",
                   help="a section's time budget (repeatable)")
    p.add_argument("--total-budget", type=float, help="seconds for all sections")
    p.add_argument("--rounds", type=int, help="section 1: rounds of every variant, rotated")
    p.add_argument("--repeat", type=int, help="timed calls after the warm-up")
    p.add_argument("--trainer-blocks", help="section 5: D,S double and single blocks (default: FLUX.1-dev's 19,38)")
    p.add_argument("--comfyui-path")
    p.add_argument("--official-path")
    p.add_argument("--official-python")
    p.add_argument("--official-pythonpath")
    return p


def settings_of(a: argparse.Namespace) -> tuple[Settings, list[str]]:
    """The run's settings and sections, or SystemExit naming the argument that is wrong."""
    keys = [k.strip() for k in a.sections.split(",") if k.strip()]
    if not keys or any(k not in SECTIONS for k in keys):
        raise SystemExit(f"gpu_suite: --sections {a.sections!r}: expected a subset of {', '.join(SECTIONS)}")
    blocks = tuple(int(x) for x in a.trainer_blocks.split(",")) if a.trainer_blocks else None
    s = settings_for(a.size, a.device, rounds=a.rounds, repeat=a.repeat, total_budget=a.total_budget,
                     trainer_blocks=blocks, comfyui_path=a.comfyui_path, official_path=a.official_path,
                     official_python=a.official_python, official_pythonpath=a.official_pythonpath)
    budgets = dict(s.budgets)
    for item in a.budget:
        key, _, seconds = item.partition("=")
        if key not in SECTIONS or not seconds:
            raise SystemExit(f"gpu_suite: --budget {item!r}: expected SECTION=SECONDS, SECTION one of {', '.join(SECTIONS)}")
        budgets[key] = float(seconds)
    return replace(s, budgets=budgets), keys


def print_plan(s: Settings, keys: list[str]) -> None:
    print(f"GPU suite plan: {s.size} on {s.device} ({s.dtype}), total budget {s.total_budget:.0f} s\n")
    print("| section | what it measures | estimate s | budget s |\n|---|---|---|---|")
    total = 0.0
    for key in keys:
        section = SECTIONS[key]
        estimate = section.estimate(s)
        total += estimate
        print(f"| {section.title} | {section.plan(s)} | {estimate:.0f} | {s.budgets[key]:.0f} |")
    print(f"| all | | {total:.0f} | {min(s.total_budget, sum(s.budgets[k] for k in keys)):.0f} |")
    print("\nEstimates: FLOPs (bench/flops.py) at 45 % of the card's bf16 peak (an H100's where unknown) plus assumed "
          "start-up and compile seconds per subprocess on a GPU; on the CPU, seconds measured on the 2-core CI machine.")


def run(s: Settings, keys: list[str], out: Path) -> dict:
    """Every section in order under the suite's and its own budget; the report written after each."""
    start = time.monotonic()
    from bench.gpu_suite.environment import environment

    rep = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "settings": s.to_json(), "environment": environment(s), "sections": {}, "elapsed_s": 0.0}
    for key in keys:
        section = SECTIONS[key]
        budget, skip = section_budget(section, s, s.total_budget - (time.monotonic() - start))
        skip = up_front_skip(section, s) or skip
        print(f"\n===== {section.title} (budget {budget:.0f} s)", flush=True)
        rec = skipped_section(section, s, skip) if skip else run_section(section, s, budget)
        rep["sections"][key] = {"title": section.title, "plan": section.plan(s), "estimate_s": section.estimate(s), **rec}
        rep["elapsed_s"] = time.monotonic() - start
        report.write(out, rep)
        print(f"===== {section.title}: {rec['status']} in {rec['elapsed_s']:.0f} s", flush=True)
    return rep


def main(argv: list[str] | None = None) -> int:
    a = arguments().parse_args(argv)
    s, keys = settings_of(a)
    if a.dry_run:
        print_plan(s, keys)
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / report.LOG_NAME, "a") as log:
        sys.stdout, sys.stderr = Tee(sys.__stdout__, log), Tee(sys.__stderr__, log)
        try:
            print_plan(s, keys)
            rep = run(s, keys, a.out)
            print("\n" + report.markdown(rep))
            print(f"written: {a.out / report.MARKDOWN_NAME}, {a.out / report.JSON_NAME}, {a.out / report.LOG_NAME}")
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    return 0


if __name__ == "__main__":
    sys.exit(main())
