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

from ..config import check_paths
from ..train import run_command
from .config import PreferenceRunConfig, check_bases, load_preference_config
from .stage import train_preference


def checked_config(path: str, overrides: list[str]) -> PreferenceRunConfig:
    """The config, with the folders and base files it names checked."""
    config = load_preference_config(path, overrides)
    check_paths(config)
    check_bases(config)
    return config


def main(argv: list[str] | None = None) -> int:
    """CLI; exit codes in the module docstring."""
    return run_command(argv, "training.preference", __doc__, "training/configs/flux_dev_preference.yaml",
                       checked_config, train_preference)
