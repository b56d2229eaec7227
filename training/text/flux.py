"""The real FLUX text side for training: CLIP-L (pooled, 77 tokens) + T5 (prompt embeddings), frozen.

Placeholders as the official ``DreamOPipeline._prepare_t5`` (spec §4): T5's table is shrunk to the tokenizer
length, ``[ref#1]..[ref#9]``, ``[res]`` are added to ``tokenizer_2`` (ids ``len(tokenizer_2) - 10 .. - 1``). The
trainable placeholder rows enter T5 at its *input*: ``inputs_embeds`` is T5's frozen table lookup with the
placeholder positions replaced by the rows, so gradients reach the rows through the frozen T5. CLIP sees the
literal caption text (as in the official pipeline, whose CLIP tokenizer has no placeholder tokens).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dreamo_core.conditioning.placeholders import add_t5_placeholder_tokens

SUBFOLDERS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")


class FluxTextEncoder(nn.Module):
    """``encode(captions, rows (10, t5_dim)) -> (prompt_embeds (B, T, t5_dim), pooled (B, clip_dim), slots (B, T))``.

    T = ``max_sequence_length`` (512 for FLUX.1-dev). Frozen and always in eval mode (no T5 dropout)."""

    def __init__(self, clip: nn.Module, clip_tokenizer, t5: nn.Module, t5_tokenizer, max_sequence_length: int = 512):
        super().__init__()
        self.clip, self.t5 = clip, t5
        self.clip_tokenizer, self.t5_tokenizer = clip_tokenizer, t5_tokenizer
        self.max_sequence_length = max_sequence_length
        self.first_placeholder_id = add_t5_placeholder_tokens(t5_tokenizer, t5)  # official _prepare_t5
        self.requires_grad_(False)
        self.train(False)

    @classmethod
    def from_folder(cls, folder: str | Path, max_sequence_length: int = 512,
                    dtype: torch.dtype = torch.float32) -> FluxTextEncoder:
        """Load CLIP / T5 and their tokenizers from a diffusers FLUX pipeline folder (offline)."""
        from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel

        root = Path(folder)
        missing = [s for s in SUBFOLDERS if not (root / s).is_dir()]
        if missing:
            raise FileNotFoundError(f"model.text_encoder: {root} is not a diffusers FLUX folder; missing {missing}")
        kw = {"local_files_only": True}
        return cls(CLIPTextModel.from_pretrained(root / "text_encoder", torch_dtype=dtype, **kw),
                   AutoTokenizer.from_pretrained(root / "tokenizer", **kw),
                   T5EncoderModel.from_pretrained(root / "text_encoder_2", torch_dtype=dtype, **kw),
                   AutoTokenizer.from_pretrained(root / "tokenizer_2", **kw), max_sequence_length)

    def train(self, mode: bool = True) -> FluxTextEncoder:
        """Frozen encoder: stays in eval mode whatever the parent module asks."""
        return super().train(False)

    @property
    def t5_dim(self) -> int:
        return int(self.t5.config.d_model)

    @property
    def pooled_dim(self) -> int:
        return int(self.clip.config.hidden_size)

    def embedding_std(self) -> float:
        """Std of T5's input table (scale for initialising the placeholder rows)."""
        return float(self.t5.get_input_embeddings().weight[: self.first_placeholder_id].float().std())

    def t5_ids(self, captions: Sequence[str]) -> torch.Tensor:
        """(B, T) T5 token ids, padded / truncated to ``max_sequence_length`` as diffusers' FluxPipeline."""
        return self.t5_tokenizer(list(captions), padding="max_length", max_length=self.max_sequence_length,
                                 truncation=True, return_tensors="pt").input_ids

    def placeholder_slots(self, captions: Sequence[str]) -> torch.Tensor:
        """(B, T) placeholder row 0..9 per T5 token (-1 elsewhere); tokenization only, no encoder call."""
        offset = self.t5_ids(captions) - self.first_placeholder_id
        return torch.where(offset >= 0, offset, torch.full_like(offset, -1))

    def identity(self) -> str:
        """What the embeddings depend on besides the caption: sequence length, dtype, both configs and a
        checksum of the first 256 rows of the T5 and CLIP token tables (a fingerprint, not a full weight hash)."""
        configs = json.dumps([self.clip.config.to_dict(), self.t5.config.to_dict()], sort_keys=True, default=str)
        crc = zlib.crc32(configs.encode())
        for table in (self.t5.get_input_embeddings().weight, self.clip.get_input_embeddings().weight):
            crc = zlib.crc32(table[:256].detach().float().cpu().numpy().tobytes(), crc)
        return f"flux-T{self.max_sequence_length}-{self.t5.dtype}-{crc:08x}"

    def pooled(self, captions: Sequence[str]) -> torch.Tensor:
        """(B, clip_dim) CLIP pooled output of the literal captions (77 tokens)."""
        ids = self.clip_tokenizer(list(captions), padding="max_length", max_length=self.clip_tokenizer.model_max_length,
                                  truncation=True, return_tensors="pt").input_ids
        return self.clip(ids.to(self.clip.device), output_hidden_states=False).pooler_output

    def encode(self, captions: Sequence[str], rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """rows: (10, t5_dim) trainable ``[ref#1..9]``, ``[res]`` rows. Returns prompt_embeds (B, T, t5_dim),
        pooled (B, clip_dim), slots (B, T) (placeholder row 0..9 per token, -1 elsewhere)."""
        ids = self.t5_ids(captions).to(self.t5.device)
        offset = ids - self.first_placeholder_id
        slots = torch.where(offset >= 0, offset, torch.full_like(ids, -1))  # as placeholder_slots
        table = self.t5.get_input_embeddings()(ids)  # (B, T, t5_dim), frozen
        embeds = torch.where((slots >= 0)[..., None], rows.to(table.dtype)[slots.clamp_min(0)], table)
        prompt_embeds = self.t5(inputs_embeds=embeds, output_hidden_states=False)[0]
        return prompt_embeds, self.pooled(captions), slots
