"""Build a DreamOGenerator from local files (FLUX in diffusers layout + official DreamO files) or the tiny default."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..conditioning.embeddings import ConditionEmbeddings
from ..conditioning.placeholders import add_t5_placeholder_tokens
from ..spec import FLUX_DEV, DreamOSpec
from ..weights.formats import load_dreamo_weights
from ..weights.lora_diffusers import merge_lora
from .pipeline import DreamOGenerator
from .schedule import make_scheduler
from .tiny import TinyPromptEncoder, tiny_spec, tiny_tables, tiny_transformer, tiny_vae

log = logging.getLogger("DreamO")

# Official file names inside the DreamO model folder, and their fusion strengths (spec §5.1).
PRESETS: dict[str, list[tuple[str, float]]] = {
    "v1.1": [("dreamo.safetensors", 1.0), ("dreamo_cfg_distill.safetensors", 1.0),
             ("v1.1/dreamo_sft_lora.safetensors", 1.0), ("v1.1/dreamo_dpo_lora.safetensors", 1.25)],
    "v1": [("dreamo.safetensors", 1.0), ("dreamo_cfg_distill.safetensors", 1.0),
           ("dreamo_quality_lora_pos.safetensors", 0.15), ("dreamo_quality_lora_neg.safetensors", -0.8)],
}


@dataclass(frozen=True)
class LoraRequest:
    path: Path
    strength: float = 1.0

    @staticmethod
    def parse(text: str) -> LoraRequest:
        """``PATH`` or ``PATH@STRENGTH`` (e.g. ``dreamo_dpo_lora.safetensors@1.25``)."""
        path, _, strength = text.rpartition("@") if "@" in text else (text, "", "")
        try:
            return LoraRequest(Path(path), float(strength) if strength else 1.0)
        except ValueError as e:
            raise ValueError(f"--lora {text!r}: expected PATH or PATH@STRENGTH with a number") from e


def preset_loras(dreamo_dir: Path, version: str, turbo: Path | None) -> list[LoraRequest]:
    """The official fusion stack of ``version`` from a folder holding the official file names."""
    if version not in PRESETS:
        raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {version!r}")
    reqs = [LoraRequest(dreamo_dir / name, s) for name, s in PRESETS[version]]
    missing = [str(r.path) for r in reqs if not r.path.is_file()]
    if missing:
        raise FileNotFoundError(f"--preset {version}: missing official DreamO file(s): {', '.join(missing)}")
    return reqs + ([LoraRequest(turbo, 1.0)] if turbo else [])


def apply_dreamo_files(transformer: torch.nn.Module, loras: Sequence[LoraRequest], embeddings: Path | None,
                       spec: DreamOSpec) -> tuple[ConditionEmbeddings | None, torch.Tensor | None]:
    """Merge every LoRA into ``transformer``; return the embedding tables and T5 rows found (last one wins)."""
    tables, t5 = None, None
    for req in list(loras) + ([LoraRequest(embeddings, 1.0)] if embeddings else []):
        w = load_dreamo_weights(req.path, spec)
        n = merge_lora(transformer, w, req.strength)
        log.info("%s: %s, %d LoRA modules merged at strength %g", req.path.name, w.kind, n, req.strength)
        tables = w.embeddings or tables
        t5 = w.t5_rows if w.t5_rows is not None else t5
    return tables, t5


def install_t5_placeholders(tokenizer, text_encoder, rows: torch.Tensor) -> None:
    """Official ``_prepare_t5``: the placeholder tokens (``add_t5_placeholder_tokens``), then write the rows."""
    add_t5_placeholder_tokens(tokenizer, text_encoder)
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[-rows.shape[0]:] = rows.to(weight)


class DiffusersPromptEncoder:
    """CLIP-L pooled + T5 (512 tokens) through a diffusers FluxPipeline's ``encode_prompt``."""

    def __init__(self, pipe, device: torch.device) -> None:
        self.pipe, self.device = pipe, device

    def encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, pooled, _ = self.pipe.encode_prompt(prompt=prompt, prompt_2=None, device=self.device,
                                                    max_sequence_length=512)
        return embeds, pooled


def spec_from_transformer(transformer: torch.nn.Module, t5_dim: int) -> DreamOSpec:
    """The DreamOSpec of a loaded diffusers FLUX transformer (FLUX.1-dev gives FLUX_DEV)."""
    spec = DreamOSpec.of_diffusers_config(transformer.config, t5_dim)
    if spec.hidden_size == FLUX_DEV.hidden_size and spec != FLUX_DEV:
        log.warning("transformer has FLUX width but not FLUX.1-dev's block counts: %s", spec)
    return spec


def load_flux_generator(flux_dir: Path, loras: Sequence[LoraRequest], embeddings: Path | None,
                        device: str, dtype: torch.dtype) -> DreamOGenerator:
    """FLUX.1-dev in diffusers layout (``model_index.json``, ``transformer/``, ``vae/``, ...) + DreamO files."""
    flux_dir = Path(flux_dir)
    if not (flux_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"--flux {flux_dir}: not a diffusers FLUX folder (model_index.json not found)")
    from diffusers import FluxPipeline

    with warnings.catch_warnings():  # newer diffusers renamed torch_dtype -> dtype; older ones only know torch_dtype
        warnings.simplefilter("ignore", FutureWarning)
        pipe = FluxPipeline.from_pretrained(str(flux_dir), local_files_only=True, torch_dtype=dtype)
    spec = spec_from_transformer(pipe.transformer, pipe.text_encoder_2.get_input_embeddings().weight.shape[1])
    tables, t5 = apply_dreamo_files(pipe.transformer, loras, embeddings, spec)
    if t5 is not None:
        install_t5_placeholders(pipe.tokenizer_2, pipe.text_encoder_2, t5)
    pipe.to(device)
    return DreamOGenerator(pipe.transformer, pipe.vae, DiffusersPromptEncoder(pipe, torch.device(device)),
                           make_scheduler(pipe.scheduler.config), tables, device, dtype)


def load_tiny_generator(loras: Sequence[LoraRequest] = (), embeddings: Path | None = None,
                        seed: int = 0) -> DreamOGenerator:
    """The embedded tiny random FLUX (float32, CPU). DreamO files given must be sized for it (tests make some)."""
    spec = tiny_spec()
    transformer = tiny_transformer(seed)
    tables, t5 = apply_dreamo_files(transformer, loras, embeddings, spec) if (loras or embeddings) else (None, None)
    tables = tables or tiny_tables(spec, seed)
    return DreamOGenerator(transformer, tiny_vae(seed), TinyPromptEncoder(placeholder_rows=t5), make_scheduler(),
                           tables, "cpu", torch.float32)
