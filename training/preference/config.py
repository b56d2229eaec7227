"""The preference stage's configuration: the trainer's YAML (``training/config.py``: model, data, stages, precision,
distribution, checkpoints; the same strict keys and ``--key=value`` overrides) plus a ``preference:`` section.

The learning rate is the stages' ``lr``, the new LoRA's rank ``model.lora_rank``. The DreamO losses' ``loss:``
section is refused (the stage's loss is the ``preference:`` section). Defaults and why: ``training/README.md``
("Preference post-training").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamo_core.generator.loading import LoraRequest

from ..config import TrainConfig, apply_override, from_dict, read_yaml, validate

MODES = ("dpo", "sft")
PAIR_DATA_DEFAULTS = {"plain_caption_prob": 0.0}  # a pair is judged under its own caption (see the README)


@dataclass
class PreferenceConfig:
    mode: str = "dpo"  # "dpo": Flow-DPO; "sft": the control, flow matching on the preferred targets only
    beta: float = 1250.0  # β of −log σ(−β/2·(e_w − e_l)): Diffusion-DPO's 5000 for ε-errors / 4 (README)
    localized: bool = False  # the error difference inside each row's region M only (LDPO); every row needs one
    dilation: float = 1.2  # α: a row's region_box enlarged by α about its centre (DreamFuse's dilation)
    anchor: float = 0.0  # weight of flow matching on the preferred target outside M (localized only)
    base: list[str] = field(default_factory=list)  # DreamO file(s) FILE[@STRENGTH] merged under the new LoRA
    lora_file: str = "preference_lora.safetensors"  # written in output_dir


@dataclass
class PreferenceRunConfig(TrainConfig):
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)

    @property
    def bases(self) -> list[LoraRequest]:
        return [LoraRequest.parse(b) for b in self.preference.base]


def validate_preference(cfg: PreferenceRunConfig) -> None:
    """The stage's own checks (after the trainer's ``validate``), failing with the key's name."""
    p = cfg.preference
    if p.mode not in MODES:
        raise ValueError(f"config preference.mode: expected one of {MODES}, got {p.mode!r}")
    if not p.beta > 0:
        raise ValueError(f"config preference.beta: must be > 0, got {p.beta}")
    if not p.dilation >= 1:
        raise ValueError(f"config preference.dilation: must be >= 1 (a box is enlarged, never shrunk), got {p.dilation}")
    if not p.anchor >= 0:
        raise ValueError(f"config preference.anchor: must be >= 0, got {p.anchor}")
    if p.anchor > 0 and not p.localized:
        raise ValueError("config preference.anchor: the anchor is flow matching outside the region M; it needs "
                         "preference.localized: true")
    if Path(p.lora_file).suffix != ".safetensors" or Path(p.lora_file).name != p.lora_file:
        raise ValueError(f"config preference.lora_file: a file name ending in .safetensors, got {p.lora_file!r}")
    for text in p.base:
        try:
            LoraRequest.parse(text)
        except ValueError as e:
            raise ValueError(f"config preference.base: {text!r}: expected FILE or FILE@STRENGTH with a number") from e
    for i, s in enumerate(cfg.stages):
        if any(s.drop_for(g) for g in (*cfg.data.datasets, "")):
            raise ValueError(f"config stages[{i}].ref_token_drop: the preference stage keeps every reference token "
                             f"(both members of a pair see the same conditioning), got {s.ref_token_drop}")


def check_bases(cfg: PreferenceRunConfig) -> None:
    """FileNotFoundError naming ``preference.base`` for a base file that is not there (before any model loads)."""
    for text, request in zip(cfg.preference.base, cfg.bases):
        if not request.path.is_file():
            raise FileNotFoundError(f"config preference.base: {text}: file not found (a DreamO file, e.g. "
                                    "dreamo.safetensors or the trainer's dreamo_trained.safetensors, then any LoRA "
                                    "merged with it at inference)")


def load_preference_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PreferenceRunConfig:
    """YAML file (optional) + overrides -> validated ``PreferenceRunConfig`` (``data.plain_caption_prob`` defaults
    to 0 here)."""
    data: dict[str, Any] = read_yaml(Path(path)) if path is not None else {}
    for o in overrides or []:
        apply_override(data, o)
    if "loss" in data:
        raise ValueError("config loss: the DreamO losses are not used by the preference stage; its loss is set in "
                         "the preference section (beta, localized, dilation, anchor, mode)")
    if isinstance(data.get("data", {}), dict):
        data["data"] = PAIR_DATA_DEFAULTS | data.get("data", {})
    cfg = from_dict(PreferenceRunConfig, data)
    validate(cfg)
    validate_preference(cfg)
    return cfg
