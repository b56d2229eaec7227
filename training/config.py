"""Trainer configuration: YAML -> nested dataclasses; unknown keys and wrong types raise; ``--a.b=value`` overrides.

Defaults are read in one place (the dataclasses below); ``training/README.md`` explains the choices.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROUTE_LAYERS = ("transformer_blocks.*",)  # default layers of L_route / L_holder (fnmatch patterns): the double blocks


@dataclass
class ModelConfig:
    pretrained: str = ""  # folder of a diffusers FluxTransformer2DModel; "" = a tiny random one (tests, demo)
    num_layers: int = 2  # tiny model only (below, to axes_dims_rope)
    num_single_layers: int = 2
    attention_head_dim: int = 16
    num_attention_heads: int = 2
    joint_attention_dim: int = 32  # = t5_dim of the text encoder
    pooled_projection_dim: int = 32
    axes_dims_rope: list[int] = field(default_factory=lambda: [4, 6, 6])
    lora_rank: int = 128  # the official DreamO rank
    lora_alpha: float = 0.0  # 0 -> alpha = rank (scale 1, as the official file: no alpha keys)
    embedding_init_std: float = 0.02  # task/idx/placeholder rows start as small noise
    text_encoder: str = ""  # diffusers FLUX folder (text_encoder, tokenizer, text_encoder_2, tokenizer_2); "" = tiny
    text_max_tokens: int = 16  # T5 sequence length (FLUX.1-dev: 512)
    tiny_text: bool = False  # with model.pretrained: the tiny text encoder (a toy base, training.toy.base)
    tiny_text_context: int = 0  # the tiny encoder mixes in this many previous tokens (text/tiny_hashed.py; toy: 5)
    codec: str = "pixel"  # "pixel": fixed linear stand-in for the VAE (tests); "toy": the toy world's exact codec
    # (training.toy.codec); "vae": diffusers AutoencoderKL
    vae_path: str = ""
    # bf16: frozen base (transformer, CLIP/T5) stored in bf16 and bf16 autocast (Accelerate mixed precision); the
    # trainables (LoRA, task/idx tables, placeholder rows) stay fp32. null = auto: bf16 for a pretrained model,
    # fp32 for the tiny random one (CPU tests: exact fp32 references, CPU bf16 matmuls are slow).
    bf16: bool | None = None
    gradient_checkpointing: bool = False  # recompute each transformer block in backward (diffusers' checkpointing)
    text_cache: str = ""  # folder: embeddings of captions without placeholders, encoded once (safetensors); "" = off
    seed: int = 0  # weights of the tiny random model and of the tiny text encoder
    init_seed: int | None = None  # start of the LoRA and the tables; None = model.seed (a new draw per training seed
    # without changing the frozen model or its text encoder)

    @property
    def trainables_seed(self) -> int:
        """Seeds the LoRA and table initialisation: ``init_seed``, else ``seed``."""
        return self.seed if self.init_seed is None else self.init_seed

    @property
    def uses_bf16(self) -> bool:
        """``bf16`` resolved: bf16 base + autocast for a pretrained model unless ``bf16: false``."""
        return bool(self.pretrained) if self.bf16 is None else self.bf16


@dataclass
class DataConfig:
    datasets: dict[str, str] = field(default_factory=dict)  # group name -> folder with metadata.jsonl
    buckets: list[list[int]] = field(default_factory=lambda: [[128, 128]])  # target (height, width), multiples of 16
    ref_res: int = 64  # reference area ~ ref_res**2 (official: 512 ip/style, 512 id crop)
    batch_size: int = 4  # global batch of one micro-step (split over processes); x grad_accum per optimizer step
    plain_caption_prob: float = 0.5  # paper: half the prompts without placeholders (L_holder dropped)
    on_bad_row: str = "stop"  # "stop" or "skip" (skipped rows are logged with file:line and reason)
    placement: str = "diagonal"  # "diagonal": DreamO's reference ids; "box": each reference's ids in its box (a row's
    # "box", else its mask's bounding box: DreamFuse's positional affine, the toy DreamO's choice)


@dataclass
class LossConfig:
    diff: float = 1.0
    route: float = 0.5
    holder: float = 0.5
    route_mode: str = "softmax"  # "softmax" (default, see dreamo_core/losses.py) or "logits" (paper literal)
    route_layers: list[str] = field(default_factory=lambda: list(ROUTE_LAYERS))  # fnmatch patterns


@dataclass
class StageConfig:
    name: str = "stage"
    steps: int = 100
    lr: float = 4e-5
    warmup: int = 0
    mixture: dict[str, float] = field(default_factory=dict)  # dataset group -> sampling weight
    ref_token_drop: float | dict[str, float] = 0.0  # stage 3: 0.95 of the reference tokens dropped; a mapping
    # {group: share} drops them only in those dataset groups (e.g. {self: 0.95} while other groups keep theirs)

    def drop_for(self, group: str) -> float:
        """The share of reference tokens dropped in a batch of dataset ``group``."""
        drop = self.ref_token_drop
        return drop.get(group, 0.0) if isinstance(drop, dict) else drop


@dataclass
class TrainConfig:
    output_dir: str = "runs/dreamo"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    grad_accum: int = 1  # micro-steps per optimizer step (gradients synced on the last one only)
    distributed: str = "ddp"  # "ddp" (replicas) or "fsdp" (FSDP2 fully_shard per transformer / T5 block)
    guidance: float = 3.5
    timestep_sampling: str = "logit_normal"  # or "uniform"
    checkpoint_every: int = 100
    keep_checkpoints: int | None = 3  # newest checkpoint directories kept; 0 / null = keep all
    sample_every: int = 0  # 0 = never
    log_every: int = 10  # steps between lines of output_dir/loss_log.jsonl; 0 = no log
    progress: bool = True

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)


FLOAT_WITHOUT_DOT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")


def _check(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` (dataclasses built from dicts); raise ValueError on a mismatch."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"config {where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"config {where}: expected a list, got {value!r}")
        return [_check(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config {where}: expected a mapping, got {value!r}")
        return {_check(k, args[0], where): _check(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for a in args:
            try:
                return _check(value, a, where)
            except ValueError:
                pass
        raise ValueError(f"config {where}: {value!r} is none of {args}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and FLOAT_WITHOUT_DOT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ValueError(f"config {where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ValueError naming the key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"config {where or cls.__name__}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _check(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def yaml_error(e: Exception) -> str:
    """One line for a YAML parse error: ``line L, column C: problem``."""
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def _set(data: dict[str, Any], parts: list[str], value: Any) -> None:
    """``data[parts[0]][parts[1]]... = value``; numbers index lists, missing mappings are created."""
    node: Any = data
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    elif isinstance(node, dict):
        node[parts[-1]] = value
    else:
        raise ValueError(f"{'.'.join(parts[:-1])} is not a mapping or list")


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``--a.b.c=value`` (value parsed as YAML; list items by number: ``stages.0.steps=5``) in place."""
    import yaml

    if not override.startswith("--") or "=" not in override:
        raise ValueError(f"override {override!r}: expected --key=value (nested keys with dots)")
    key, raw = override[2:].split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ValueError(f"override {override!r}: the value is not valid YAML ({yaml_error(e)})") from e
    try:
        _set(data, key.split("."), value)
    except (ValueError, IndexError, AttributeError) as e:  # a bad list index, a path through a scalar
        raise ValueError(f"override {override!r}: no such key path ({type(e).__name__}: {e})") from e


def read_yaml(p: Path) -> dict[str, Any]:
    """The YAML mapping in file ``p``; a parse error is a one-line ValueError naming the file, line and column."""
    import yaml

    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML: {yaml_error(e)}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{p}: the config must be a YAML mapping")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML file (optional) + overrides -> validated ``TrainConfig``."""
    data: dict[str, Any] = read_yaml(Path(path)) if path is not None else {}
    for o in overrides or []:
        apply_override(data, o)
    cfg = from_dict(TrainConfig, data)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks, failing early with the key names."""
    if cfg.model.pretrained and not cfg.model.text_encoder and not cfg.model.tiny_text:
        raise ValueError("config model.text_encoder: a pretrained transformer (model.pretrained) needs the FLUX folder "
                         "with its CLIP / T5 (text_encoder, tokenizer, text_encoder_2, tokenizer_2)")
    if cfg.model.codec not in ("pixel", "toy", "vae"):
        raise ValueError(f"config model.codec: expected 'pixel', 'toy' or 'vae', got {cfg.model.codec!r}")
    if cfg.model.codec == "vae" and not cfg.model.vae_path:
        raise ValueError("config model.vae_path: model.codec 'vae' needs the folder of a diffusers AutoencoderKL")
    if cfg.loss.route_mode not in ("softmax", "logits"):
        raise ValueError(f"config loss.route_mode: expected 'softmax' or 'logits', got {cfg.loss.route_mode!r}")
    if cfg.data.placement not in ("diagonal", "box"):
        raise ValueError(f"config data.placement: expected 'diagonal' or 'box', got {cfg.data.placement!r}")
    if cfg.data.on_bad_row not in ("stop", "skip"):
        raise ValueError(f"config data.on_bad_row: expected 'stop' or 'skip', got {cfg.data.on_bad_row!r}")
    if cfg.timestep_sampling not in ("logit_normal", "uniform"):
        raise ValueError(f"config timestep_sampling: expected 'logit_normal' or 'uniform', got {cfg.timestep_sampling!r}")
    if cfg.grad_accum < 1:
        raise ValueError(f"config grad_accum: must be >= 1, got {cfg.grad_accum}")
    if cfg.distributed not in ("ddp", "fsdp"):
        raise ValueError(f"config distributed: expected 'ddp' or 'fsdp', got {cfg.distributed!r}")
    if cfg.checkpoint_every < 1:
        raise ValueError(f"config checkpoint_every: must be >= 1, got {cfg.checkpoint_every}")
    for key in ("keep_checkpoints", "sample_every", "log_every"):
        if (getattr(cfg, key) or 0) < 0:
            raise ValueError(f"config {key}: must be >= 0, got {getattr(cfg, key)}")
    for h, w in cfg.data.buckets:
        if h % 16 or w % 16:
            raise ValueError(f"config data.buckets: {h}x{w} is not a multiple of 16 pixels")
    for i, s in enumerate(cfg.stages):
        missing = sorted(set(s.mixture) - set(cfg.data.datasets))
        if missing:
            raise ValueError(f"config stages[{i}].mixture: dataset group(s) {missing} are not in data.datasets")
        drops = s.ref_token_drop.values() if isinstance(s.ref_token_drop, dict) else [s.ref_token_drop]
        if not all(0.0 <= d < 1.0 for d in drops):
            raise ValueError(f"config stages[{i}].ref_token_drop must be in [0, 1), got {s.ref_token_drop}")
        if isinstance(s.ref_token_drop, dict) and set(s.ref_token_drop) - set(cfg.data.datasets):
            raise ValueError(f"config stages[{i}].ref_token_drop: dataset group(s) "
                             f"{sorted(set(s.ref_token_drop) - set(cfg.data.datasets))} are not in data.datasets")


def _need(key: str, path: str, parts: tuple[str, ...], what: str) -> None:
    """FileNotFoundError naming ``key`` unless ``path`` is a folder holding ``parts``."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"config {key}: {root} is not a folder (expected {what})")
    missing = [p for p in parts if not (root / p).exists()]
    if missing:
        raise FileNotFoundError(f"config {key}: {root} lacks {missing} (expected {what})")


def check_paths(cfg: TrainConfig) -> None:
    """Fail before any model loads when a folder the config names is missing (message: key, path, what)."""
    from .text.flux import SUBFOLDERS

    m = cfg.model
    if m.pretrained:
        _need("model.pretrained", m.pretrained, ("config.json",), "a diffusers FluxTransformer2DModel folder")
    if m.text_encoder:
        _need("model.text_encoder", m.text_encoder, SUBFOLDERS, "the diffusers FLUX folder with CLIP and T5")
    if m.codec == "vae":
        _need("model.vae_path", m.vae_path, ("config.json",), "a diffusers AutoencoderKL folder")
    if not cfg.data.datasets:
        raise ValueError("config data.datasets: no dataset given (a mapping: group name -> folder with "
                         "metadata.jsonl)")
    for name, folder in cfg.data.datasets.items():
        _need(f"data.datasets.{name}", folder, ("metadata.jsonl",), "a dataset folder with metadata.jsonl")
