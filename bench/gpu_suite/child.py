"""One section of the GPU suite in its own subprocess (a clean GPU, its own peak memory, a hard time limit):

    python -m bench.gpu_suite.child KEY SETTINGS.json RESULT.json DEADLINE

Runs the section's parts one after the other, no part started after DEADLINE (seconds since the epoch: the
section's budget counts from when the suite started this process), and rewrites RESULT.json after each
({part: {"status": done | skipped | error, "rows", "notes", "reason" | "error", "elapsed_s"}}): a part that fails
is recorded with the end of its traceback and the next one still runs, and a section killed at its hard limit
keeps the parts it finished."""

from __future__ import annotations

import gc
import json
import sys
import time
import traceback
from pathlib import Path

from bench.gpu_suite.sections import SECTIONS
from bench.gpu_suite.settings import Settings


def run_parts(key: str, settings: Settings, result_file: Path, deadline_epoch: float) -> dict:
    deadline = time.monotonic() + (deadline_epoch - time.time())
    result: dict[str, dict] = {}
    for part in SECTIONS[key].parts(settings):
        t0 = time.monotonic()
        if part.skip:
            result[part.name] = {"status": "skipped", "reason": part.skip}
        elif t0 > deadline:
            result[part.name] = {"status": "skipped", "reason": "time budget: the section's time was up"}
        else:
            print(f"== {key}: {part.name}", flush=True)
            try:
                result[part.name] = {"status": "done", **part.run(settings, deadline)}
            except (Exception, SystemExit):
                tail = traceback.format_exc()[-2500:]
                print(tail, file=sys.stderr, flush=True)
                result[part.name] = {"status": "error", "error": tail}
            result[part.name]["elapsed_s"] = time.monotonic() - t0
            free_device_memory()
        result_file.write_text(json.dumps(result, indent=1, default=str))
    return result


def free_device_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str]) -> int:
    key, settings_file, result_file, deadline = argv
    settings = Settings.from_json(json.loads(Path(settings_file).read_text()))
    run_parts(key, settings, Path(result_file), float(deadline))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
