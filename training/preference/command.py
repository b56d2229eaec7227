"""The preference stage: ``python -m training.preference CONFIG.yaml [--key=value ...]``.

Trains a NEW LoRA on top of the frozen base with the DreamO files of ``preference.base`` merged in, with Flow-DPO on
preferred / rejected pairs (``preference.mode: dpo``; localized inside each pair's region with
``preference.localized``) or, as the control, flow matching on the preferred targets alone (``mode: sft``), then
writes it as an ordinary FLUX LoRA, ``output_dir/preference_lora.safetensors``: stack it after Load DreamO LoRA with
core LoraLoaderModelOnly, or give it to ``dreamo --lora``. Config keys: the trainer's (``training/README.md``) plus
the ``preference:`` section (``training/preference/config.py``); an example: ``training/configs/flux_dev_preference.yaml``.

Runs under ``accelerate launch`` / ``torch.distributed.run`` like ``training.train`` (DDP, or FSDP2 with
``distributed: fsdp``). Every ``log_every`` steps process 0 appends ``{"step", "stage", "lr", "loss", "margin",
"accuracy", "anchor"}`` (SFT: ``loss``) to ``output_dir/loss_log.jsonl``; the progress line shows them too.

Exit codes: 0 done; 1 stopped on a non-finite loss; 2 usage, config, base file, model folder or dataset error (one
line on stderr, no traceback; the pairs' rows are checked, images decoded, before the model loads).
"""

from __future__ import annotations

import logging
import sys

from ..checkpoint import CheckpointMismatchError
from ..config import check_paths
from ..data import DatasetError
from ..step_losses import NonFiniteLossError
from ..train import fail
from .config import check_bases, load_preference_config
from .stage import train_preference

PROG = "training.preference"
USAGE = f"usage: python -m {PROG} CONFIG.yaml [--key=value ...]   (-h, --help: this help)"


def main(argv: list[str] | None = None) -> int:
    """CLI; exit codes in the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(f"{USAGE}\n\n{__doc__}")
        return 0
    if not argv or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return fail("no config file given (the first argument is a YAML file, e.g. "
                    "training/configs/flux_dev_preference.yaml)", 2, PROG)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_preference_config(argv[0], argv[1:])
        check_paths(config)
        check_bases(config)
    except (ValueError, FileNotFoundError, KeyError) as e:
        return fail(e, 2, PROG)
    try:
        train_preference(config)
    except (DatasetError, CheckpointMismatchError) as e:
        return fail(e, 2, PROG)
    except NonFiniteLossError as e:
        return fail(e, 1, PROG)
    return 0
