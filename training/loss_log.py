"""``output_dir/loss_log.jsonl``: one JSON line per ``log_every`` steps, written by process 0; a resumed run
first drops the lines after its checkpoint, so a killed-and-resumed run logs what an uninterrupted one does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkpoint import write_text_atomic

LOSS_LOG = "loss_log.jsonl"


def trim_loss_log(path: Path, step: int) -> None:
    """Keep the loss log's lines up to ``step`` (a resumed run logs the steps after its checkpoint again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            pass  # a line cut short by a kill
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


def log_losses(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to the loss log."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
