"""The suite's two result files in the output folder: ``gpu_suite.json`` (settings, environment, every section's
status and rows as numbers) and ``gpu_suite.md`` (one table per part, its notes, skips with their reasons)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.gpu_suite.sections import SECTIONS

JSON_NAME, MARKDOWN_NAME, LOG_NAME = "gpu_suite.json", "gpu_suite.md", "console.log"


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# DreamO GPU suite: {env['device']} ({report['settings']['size']}, {report['settings']['dtype']})", "",
             "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items() if k != "device"), "",
             f"Suite: {report['elapsed_s']:.0f} s of a {report['settings']['total_budget']:.0f} s budget.", ""]
    for key, rec in report["sections"].items():
        section = SECTIONS[key]
        lines += [f"## {section.title}", "", f"Plan: {rec['plan']}", "",
                  f"Status: **{rec['status']}** in {rec['elapsed_s']:.0f} s (budget {rec['budget_s']:.0f} s, "
                  f"estimate {rec['estimate_s']:.0f} s)" + (f"; {rec['reason']}" if rec.get("reason") else ""), ""]
        for name, part in rec["parts"].items():
            lines.append(f"### {name}: {part['status']}")
            lines.append("")
            if part["status"] == "done" and part.get("rows"):
                lines += [*section.markdown(name, part), ""]
            if part.get("reason"):
                lines += [f"Reason: {part['reason']}", ""]
            if part.get("error"):
                lines += ["```", part["error"].strip()[-1500:], "```", ""]
            lines += [f"- {note}" for note in part.get("notes", [])] + ([""] if part.get("notes") else [])
    return "\n".join(lines) + "\n"


def write(out: Path, report: dict) -> None:
    """Both files, replaced whole (a run cut short leaves the last complete report)."""
    for name, text in ((JSON_NAME, json.dumps(report, indent=1, default=str)), (MARKDOWN_NAME, markdown(report))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
