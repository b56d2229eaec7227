"""Official DreamO weight files: detection by key signature (never by file name), shape checks, splitting
of the embedding tables, and key normalisation.

Formats (see README "Models"):
- DreamO original (``dreamo.safetensors``): XLabs-style LoRA (``double_blocks_N…qkv_lora1.down.weight``…)
  plus ``dreamo_task_embedding`` / ``dreamo_idx_embedding`` / ``dreamo_t5_embedding``.
- XLabs LoRA only (``dreamo_cfg_distill``, ``dreamo_quality_lora_pos/neg``): same LoRA keys.
- Embeddings only (``embedding.safetensors``, the ComfyUI port's companion file).
- ComfyUI-format LoRA (``dreamo_comfyui*.safetensors``: ``diffusion_model.…lora_up/lora_down`` or ``lora_unet_…``).
- diffusers/PEFT LoRA (``v1.1/dreamo_sft_lora``, ``dreamo_dpo_lora``, FLUX turbo: ``transformer.…lora_A/lora_B``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch

from ..checks import check_finite_tensors
from ..conditioning.embeddings import ConditionEmbeddings
from ..spec import FLUX_DEV, DreamOSpec
from .lora_targets import DOUBLE_TAGS, SINGLE_TAGS, xlabs_pair_shapes

TASK_KEY = "dreamo_task_embedding.weight"
IDX_KEY = "dreamo_idx_embedding.weight"
T5_EMBEDDING_KEY = "dreamo_t5_embedding.weight"
EMBEDDING_KEYS = (TASK_KEY, IDX_KEY, T5_EMBEDDING_KEY)

XLABS_KEY = re.compile(
    r"(?:^|[._])(?P<kind>double|single)_blocks[._](?P<block>\d+)[._](?:.*[._])?"
    r"(?P<tag>qkv_lora[12]?|proj_lora[12]?)\.(?P<side>down|up)\.weight$"
)
STANDARD_LORA_SUFFIX = re.compile(
    r"\.(lora_up|lora_down|lora_A|lora_B|lora_mid|alpha|dora_scale)(\.default)?(\.weight)?$"
)


class LoraFormat(str, Enum):
    NONE = "none"
    XLABS = "xlabs"  # DreamO original / cfg-distill / quality LoRAs
    COMFY = "comfy"  # diffusion_model.* / lora_unet_* (ComfyUI-format files)
    DIFFUSERS = "diffusers"  # transformer.* lora_A / lora_B (PEFT, v1.1, turbo)


@dataclass
class DreamOWeights:
    """A loaded DreamO file split into its parts. lora keys are normalised for XLabs files
    (``double_blocks.{i}.processor.{tag}.{down|up}.weight``) and left as they are for other formats."""

    source: str
    lora_format: LoraFormat
    lora: dict[str, torch.Tensor] = field(default_factory=dict)
    embeddings: ConditionEmbeddings | None = None
    t5_rows: torch.Tensor | None = None  # (10, t5_dim): [ref#1]..[ref#9], [res]

    @property
    def kind(self) -> str:
        """Human name of what the file holds, for messages."""
        parts = []
        if self.lora_format is not LoraFormat.NONE:
            parts.append(f"{self.lora_format.value} LoRA")
        if self.embeddings is not None:
            parts.append("DreamO embeddings")
        return " + ".join(parts) or "nothing DreamO can use"


SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library refuses larger headers
LFS_POINTER_START = b"version https://git-lfs.github.com/spec/"
ZIP_START = b"PK\x03\x04"  # torch.save's zip format (.pt / .ckpt / .bin since torch 1.6)
PICKLE_START = b"\x80"  # pickle protocol >= 2 (legacy torch.save)


def describe_unreadable_safetensors(path: str | Path) -> str | None:
    """What a file that claims to be .safetensors really looks like, or None when its header and size are
    consistent (it may still fail to parse). Reads at most the header, never the tensors."""
    p = Path(path)
    size = p.stat().st_size
    if size == 0:
        return "the file is 0 bytes (an interrupted or failed download); download it again"
    with p.open("rb") as f:
        start = f.read(64)
        if start.startswith(LFS_POINTER_START):
            return (f"this is a git-lfs pointer ({size} bytes of text), not the weights: download the real file "
                    "(git lfs pull, or the file's download link on the model page)")
        if size < 8:
            return f"the file has only {size} bytes, less than a safetensors header; download it again"
        n = int.from_bytes(start[:8], "little")
        header = None
        if n <= SAFETENSORS_MAX_HEADER and 8 + n <= size:
            f.seek(8)
            try:
                header = json.loads(f.read(n))
                ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                header = None
    if header is not None:  # a real safetensors header: only the data can be short
        need = 8 + n + max(ends, default=0)
        return f"truncated: header says {need} bytes, file has {size}; download it again" if need > size else None
    # not a consistent safetensors header (checked first: a valid header length may begin with any byte)
    if start.startswith(ZIP_START) or start.startswith(PICKLE_START):
        return ("this is a pickle/zip checkpoint (torch.save format) renamed to .safetensors; use the real "
                ".safetensors file (pickle files can run code when loaded and are not accepted)")
    if start.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "this is an HTML page (a login or error page saved instead of the file); download it again"
    if n > SAFETENSORS_MAX_HEADER:
        return f"not a safetensors file: its first 8 bytes give a header of {n} bytes (the file has {size})"
    if 8 + n > size:
        return f"truncated: header says {8 + n} bytes, file has {size}; download it again"
    return "corrupted: the safetensors header is not valid JSON with tensor offsets; download it again"


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a .safetensors file (never pickle). ValueError naming the file and what it looks like instead
    (0 bytes, a git-lfs pointer, a renamed pickle/zip checkpoint, an HTML page, truncated with both sizes)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"DreamO weights file not found: {p}")
    if p.suffix.lower() != ".safetensors":
        raise ValueError(f"{p.name}: only .safetensors files are accepted (no pickle checkpoints such as .pt, "
                         ".ckpt or .bin: they can run code when loaded)")
    why = describe_unreadable_safetensors(p)
    if why is not None:
        raise ValueError(f"{p.name}: not a readable safetensors file: {why}")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{p.name}: not a readable safetensors file (truncated or corrupted download?): {e}") from e


def detect_lora_format(keys: list[str], source: str) -> LoraFormat:
    """Which LoRA layout the non-embedding keys use; raises on unknown or mixed layouts."""
    formats: set[LoraFormat] = set()
    unknown: list[str] = []
    for k in keys:
        if XLABS_KEY.search(k):
            formats.add(LoraFormat.XLABS)
        elif STANDARD_LORA_SUFFIX.search(k) and k.startswith(("diffusion_model.", "lora_unet_")):
            formats.add(LoraFormat.COMFY)
        elif STANDARD_LORA_SUFFIX.search(k) and k.startswith("transformer."):
            formats.add(LoraFormat.DIFFUSERS)
        else:
            unknown.append(k)
    if unknown:
        raise ValueError(
            f"{source}: not a DreamO file: {len(unknown)} unrecognised key(s), e.g. {unknown[:3]}. Expected "
            "DreamO embeddings (dreamo_task_embedding.weight, ...) and/or FLUX LoRA keys "
            "(double_blocks_N…qkv_lora1.down.weight, diffusion_model.…lora_up.weight or transformer.…lora_A.weight)"
        )
    if len(formats) > 1:
        raise ValueError(f"{source}: mixes LoRA layouts {sorted(f.value for f in formats)}; expected one")
    return formats.pop() if formats else LoraFormat.NONE


def split_embeddings(
    sd: Mapping[str, torch.Tensor], spec: DreamOSpec = FLUX_DEV, source: str = "weights"
) -> tuple[ConditionEmbeddings | None, torch.Tensor | None, dict[str, torch.Tensor]]:
    """Pop the three ``dreamo_*_embedding`` tensors (shape-checked) -> (tables, t5 rows (10, t5_dim), rest)."""
    rest = {k: v for k, v in sd.items() if k not in EMBEDDING_KEYS}
    has_task, has_idx = TASK_KEY in sd, IDX_KEY in sd
    if has_task != has_idx:
        missing = IDX_KEY if has_task else TASK_KEY
        raise ValueError(f"{source}: truncated DreamO embeddings: {missing} is missing")
    tables = ConditionEmbeddings(sd[TASK_KEY], sd[IDX_KEY]).validate(spec, source) if has_task else None
    t5 = None
    if T5_EMBEDDING_KEY in sd:
        t5 = sd[T5_EMBEDDING_KEY]
        n = spec.t5_placeholder_rows
        if t5.ndim != 2 or t5.shape[0] < n or t5.shape[1] != spec.t5_dim:
            raise ValueError(f"{source}: {T5_EMBEDDING_KEY} has shape {tuple(t5.shape)}, expected (N >= {n}, {spec.t5_dim})")
        t5 = t5[-n:]
    return tables, t5, rest


def normalize_xlabs(sd: Mapping[str, torch.Tensor], spec: DreamOSpec = FLUX_DEV, source: str = "LoRA") -> dict[str, torch.Tensor]:
    """XLabs keys in any prefix/separator style -> ``{double|single}_blocks.{i}.processor.{tag}.{down|up}.weight``
    (the layout ComfyUI core's ``convert_uso_lora`` reads). Every pair is shape-checked against ``spec``."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = XLABS_KEY.search(k)
        if m is None:
            raise ValueError(f"{source}: key {k!r} is not an XLabs-style DreamO LoRA key")
        kind, block, tag, side = m["kind"], int(m["block"]), m["tag"], m["side"]
        tags, count = (DOUBLE_TAGS, spec.num_double_blocks) if kind == "double" else (SINGLE_TAGS, spec.num_single_blocks)
        if tag not in tags:
            raise ValueError(f"{source}: key {k!r}: {kind} blocks use {tags}, not {tag!r}")
        if block >= count:
            raise ValueError(f"{source}: key {k!r}: block {block} does not exist (the model has {count} {kind} blocks)")
        new = f"{kind}_blocks.{block}.processor.{tag}.{side}.weight"
        if new in out:
            raise ValueError(f"{source}: two keys map to {new!r}")
        out[new] = v
    for k in [k for k in out if k.endswith(".down.weight")]:
        up_key = k.replace(".down.weight", ".up.weight")
        if up_key not in out:
            raise ValueError(f"{source}: truncated LoRA: {k} has no matching {up_key}")
        tag = k.split(".")[3]
        down, up = out[k], out[up_key]
        if down.ndim != 2 or up.ndim != 2:
            raise ValueError(f"{source}: {k[: -len('.down.weight')]} has down {tuple(down.shape)} / up {tuple(up.shape)}, "
                             "expected two 2-D matrices")
        want_down, want_up = xlabs_pair_shapes(tag, int(down.shape[0]), spec)
        if tuple(down.shape) != want_down or tuple(up.shape) != want_up:
            raise ValueError(
                f"{source}: {k[: -len('.down.weight')]} has down {tuple(down.shape)} / up {tuple(up.shape)}, "
                f"expected {want_down} / {want_up} for a FLUX model of width {spec.hidden_size}"
            )
    orphans = [k for k in out if k.endswith(".up.weight") and k.replace(".up.weight", ".down.weight") not in out]
    if orphans:
        raise ValueError(f"{source}: truncated LoRA: {orphans[0]} has no matching .down.weight")
    return out


def parse_dreamo_state_dict(sd: Mapping[str, torch.Tensor], spec: DreamOSpec = FLUX_DEV, source: str = "weights") -> DreamOWeights:
    """Split and check a DreamO state dict of any supported format (keys, shapes, and every tensor finite)."""
    if not sd:
        raise ValueError(f"{source}: the file holds no tensors")
    tables, t5, rest = split_embeddings(sd, spec, source)
    fmt = detect_lora_format(list(rest), source)
    lora = normalize_xlabs(rest, spec, source) if fmt is LoraFormat.XLABS else dict(rest)
    if fmt in (LoraFormat.COMFY, LoraFormat.DIFFUSERS):
        check_standard_pairs(lora, source)
    check_finite_tensors(sd, source)  # NaN/inf in a table or LoRA would give NaN (black) images, not an error
    return DreamOWeights(source=source, lora_format=fmt, lora=lora, embeddings=tables, t5_rows=t5)


def load_dreamo_weights(path: str | Path, spec: DreamOSpec = FLUX_DEV) -> DreamOWeights:
    """Load and check one official DreamO file (any format above)."""
    return parse_dreamo_state_dict(load_safetensors(path), spec, Path(path).name)


STANDARD_PAIRS = ((".lora_down.weight", ".lora_up.weight"), (".lora_A.weight", ".lora_B.weight"),
                  (".lora_A.default.weight", ".lora_B.default.weight"))


def check_standard_pairs(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Every down/A matrix has its up/B partner of a matching rank."""
    for down_sfx, up_sfx in STANDARD_PAIRS:
        for k in sd:
            if k.endswith(down_sfx):
                up_key = k[: -len(down_sfx)] + up_sfx
                if up_key not in sd:
                    raise ValueError(f"{source}: truncated LoRA: {k} has no matching {up_key}")
                if sd[k].ndim == 2 and sd[up_key].shape[-1] != sd[k].shape[0]:
                    raise ValueError(f"{source}: {k} rank {sd[k].shape[0]} does not match {up_key} {tuple(sd[up_key].shape)}")
            elif k.endswith(up_sfx) and k[: -len(up_sfx)] + down_sfx not in sd:
                raise ValueError(f"{source}: truncated LoRA: {k} has no matching {down_sfx}")
