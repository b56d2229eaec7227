"""DreamO attention-routing trainer: ``python -m training.train CONFIG.yaml [--key=value ...]``.

The loop itself, phase by phase: ``training/loop.py`` (``train``).

Also runs under ``accelerate launch`` (DDP, or FSDP2 with ``distributed: fsdp``): every process builds the same
global batch plan and takes its own rows; process 0 writes checkpoints (FSDP: every process its shards),
samples and the exported DreamO file. ``grad_accum: k`` runs k micro-steps of ``data.batch_size`` rows per
optimizer step (Accelerate's ``accumulate``: no gradient sync before the last). A resume is decided on process 0
and broadcast (``resume``), so the other processes need not see ``output_dir``.

Per step (paper Sec. 3.3): z_t = (1 - t) z0 + t eps; the model predicts v; L_diff = |v - (eps - z0)|²;
L_route / L_holder come from the attention records of the chosen layers; L = Σ λ·L.

Every step the loss terms are averaged over the processes (one all-reduce) BEFORE backward: when one is not
finite on any process, every process raises the same ``NonFiniteLossError`` and no optimizer step is taken (a
non-finite gradient norm, the same on every process after DDP's all-reduce, stops the step the same way). Every
``log_every`` steps process 0 appends ``{"step", "stage", "lr", "loss", "diff", "route", "holder"}`` (means over
the processes) to ``output_dir/loss_log.jsonl``; after each checkpoint only the newest ``keep_checkpoints`` stay.

Exit codes: 0 done; 1 stopped on a non-finite loss; 2 usage, config, model folder or dataset error (one line
on stderr, no traceback; the datasets' rows are checked, images decoded, before the model loads).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from .checkpoint import CheckpointMismatchError
from .config import TrainConfig, check_paths, load_config
from .data import DatasetError
from .loop import train
from .step_losses import NonFiniteLossError


def fail(error: BaseException | str, code: int, prog: str = "training.train") -> int:
    """Print ``PROG: error: ...`` as one line on stderr; return the exit code."""
    print(f"{prog}: error: " + " ".join(str(error).splitlines()), file=sys.stderr)
    return code


def run_command(argv: list[str] | None, prog: str, doc: str, example: str, load: Callable[[str, list[str]], Any],
                run: Callable[[Any], object]) -> int:
    """A trainer command ``python -m PROG CONFIG.yaml [--key=value ...]``: ``-h`` prints ``doc``; ``load(path,
    overrides)`` reads and checks the config (a bad one: exit 2), then ``run(config)``; exit codes as this module's
    docstring, every error one line ``PROG: error: ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python -m {prog} CONFIG.yaml [--key=value ...]   (-h, --help: this help)"
    if "-h" in argv or "--help" in argv:
        print(f"{usage}\n\n{doc}")
        return 0
    if not argv or argv[0].startswith("-"):
        print(usage, file=sys.stderr)
        return fail(f"no config file given (the first argument is a YAML file, e.g. {example})", 2, prog)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load(argv[0], argv[1:])
    except (ValueError, FileNotFoundError, KeyError) as e:  # bad config or model folder: a message, not a traceback
        return fail(e, 2, prog)
    try:
        run(config)
    except (DatasetError, CheckpointMismatchError) as e:
        return fail(e, 2, prog)
    except NonFiniteLossError as e:
        return fail(e, 1, prog)
    return 0


def checked_config(path: str, overrides: list[str]) -> TrainConfig:
    """The config, with the folders it names checked."""
    config = load_config(path, overrides)
    check_paths(config)
    return config


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m training.train CONFIG.yaml [--key=value ...]``; exit codes in the module docstring."""
    return run_command(argv, "training.train", __doc__, "training/configs/tiny.yaml", checked_config, train)


if __name__ == "__main__":
    raise SystemExit(main())
