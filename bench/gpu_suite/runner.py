"""The suite's sections, each in a subprocess under its time budget (soft: no part or grid point starts after it;
hard: killed at budget + grace), their console output teed into the output folder, the report rewritten after
each section so that a run cut short still leaves its table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TextIO

from bench.gpu_suite.section import Section
from bench.gpu_suite.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MIN_SHARE = 0.25  # a section starts only with at least this share of its budget left in the suite's


def grace_s(budget_s: float) -> float:
    """Seconds a section's subprocess may run past its budget (finishing the measurement under way, writing)."""
    return 20 + 0.25 * budget_s


class Tee:
    """Writes to the console and to the console log in the output folder."""

    def __init__(self, console: TextIO, log: TextIO):
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.console.write(text)
        self.log.write(text)
        self.log.flush()
        return len(text)

    def flush(self) -> None:
        self.console.flush()
        self.log.flush()


def copy_lines(stream: TextIO) -> None:
    """A subprocess's output, line by line, to this process's (teed) stdout."""
    for line in stream:
        sys.stdout.write(line)


def run_section(section: Section, settings: Settings, budget_s: float) -> dict:
    """Run ``section`` in a subprocess with ``budget_s``; its record: status (done / partial / error / timeout /
    skipped), elapsed_s, budget_s and the parts' results."""
    with tempfile.TemporaryDirectory() as tmp:
        settings_file, result_file = Path(tmp, "settings.json"), Path(tmp, "result.json")
        settings_file.write_text(json.dumps(settings.to_json()))
        cmd = [sys.executable, "-m", "bench.gpu_suite.child", section.key, str(settings_file), str(result_file),
               str(time.time() + budget_s)]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        copier = threading.Thread(target=copy_lines, args=(proc.stdout,), daemon=True)
        copier.start()
        timed_out = False
        try:
            proc.wait(timeout=budget_s + grace_s(budget_s))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the section and every subprocess it started
            proc.wait()
            timed_out = True
        copier.join(timeout=5)
        parts = json.loads(result_file.read_text()) if result_file.exists() else {}
    record = {"budget_s": budget_s, "elapsed_s": time.monotonic() - t0, "parts": parts, "exit_code": proc.returncode}
    for part in section.parts(settings):
        parts.setdefault(part.name, {"status": "timeout" if timed_out else "error",
                                     "reason": f"killed at the hard limit ({budget_s + grace_s(budget_s):.0f} s)"
                                     if timed_out else f"the section's subprocess ended (exit code {proc.returncode})"})
    record["status"] = "timeout" if timed_out else section_status(list(parts.values()))
    return record


def section_status(parts: list[dict]) -> str:
    """done: every part that can run here ran to its end (parts skipped for a missing checkout do not count);
    partial: the time budget cut something, or one part failed and another finished; error: none finished;
    skipped: none ran."""
    ran = [p for p in parts if p["status"] != "skipped"]
    cut = any(p["status"] == "skipped" and p["reason"].startswith("time budget") for p in parts) or \
        any(n.startswith("time budget") for p in ran for n in p.get("notes", []))
    if not ran:
        return "partial" if cut else "skipped"
    if all(p["status"] == "error" for p in ran):
        return "error"
    return "done" if all(p["status"] == "done" for p in ran) and not cut else "partial"


def up_front_skip(section: Section, settings: Settings) -> str | None:
    """Why no part of ``section`` can run here (each part's reason), or None."""
    reasons = [p.skip for p in section.parts(settings)]
    return "; ".join(reasons) if all(reasons) else None


def skipped_section(section: Section, settings: Settings, reason: str) -> dict:
    return {"status": "skipped", "reason": reason, "budget_s": 0.0, "elapsed_s": 0.0,
            "parts": {p.name: {"status": "skipped", "reason": reason} for p in section.parts(settings)}}


def section_budget(section: Section, settings: Settings, suite_left_s: float) -> tuple[float, str | None]:
    """(this section's budget, why it is skipped or None): its own budget cut to what the suite has left, skipped
    when less than ``MIN_SHARE`` of its budget is left."""
    own = settings.budgets[section.key]
    if suite_left_s < MIN_SHARE * own:
        return 0.0, f"time budget: {max(suite_left_s, 0):.0f} s of the suite's {settings.total_budget:.0f} s left, " \
                    f"the section's budget is {own:.0f} s"
    return min(own, suite_left_s), None
