"""Writes the example workflows in workflows/ (ComfyUI frontend UI format, version 0.4); the recipes, layout and
model catalogue live in ``tools/workflows/``.

Run: python tools/build_workflows.py   (then python tools/render_workflow.py workflows/*.json)
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: import this checkout's packages (not an installed copy of another checkout)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.workflows.table import write_workflows  # noqa: E402

if __name__ == "__main__":
    write_workflows()
