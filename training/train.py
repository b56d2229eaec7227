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

from .checkpoint import CheckpointMismatchError
from .config import check_paths, load_config
from .data import DatasetError
from .loop import train
from .step_losses import NonFiniteLossError

USAGE = "usage: python -m training.train CONFIG.yaml [--key=value ...]   (-h, --help: this help)"


def fail(error: BaseException | str, code: int, prog: str = "training.train") -> int:
    """Print ``PROG: error: ...`` as one line on stderr; return the exit code."""
    print(f"{prog}: error: " + " ".join(str(error).splitlines()), file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m training.train CONFIG.yaml [--key=value ...]``; exit codes in the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(f"{USAGE}\n\n{__doc__}")
        return 0
    if not argv or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return fail("no config file given (the first argument is a YAML file, e.g. training/configs/tiny.yaml)", 2)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(argv[0], argv[1:])
        check_paths(config)
    except (ValueError, FileNotFoundError, KeyError) as e:  # bad config or model folder: a message, not a traceback
        return fail(e, 2)
    try:
        train(config)
    except (DatasetError, CheckpointMismatchError) as e:
        return fail(e, 2)
    except NonFiniteLossError as e:
        return fail(e, 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
