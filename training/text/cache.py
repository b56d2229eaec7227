"""Disk cache of the frozen text encoder's output for captions WITHOUT placeholders.

Such a caption's T5 prompt embeddings and CLIP pooled vector do not depend on anything trained (the placeholder
rows only enter at placeholder tokens), so they are encoded once and read back afterwards: T5 runs only for the
captions that hold ``[ref#k]`` / ``[res]`` (their rows are trained through T5's input). A caption counts as
plain when the encoder's own tokenization of it has no placeholder token (``placeholder_slots``).

Layout: ``<folder>/<encoder identity>/<sha256(caption)>.safetensors`` with ``prompt_embeds`` (T, t5_dim),
``pooled`` (P,) in the encoder's output dtype and the caption in the metadata (checked on read). The identity
names the encoder's sizes, dtype and a checksum of its frozen tables (``identity()`` of each encoder), so a
cache written by another encoder is never read. Files are written to a temporary name and ``os.replace``d:
processes sharing the folder may race on a file, never corrupt it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..parallel import any_true


def caption_key(caption: str) -> str:
    """sha256 hex digest of the caption's UTF-8 bytes."""
    return hashlib.sha256(caption.encode("utf-8")).hexdigest()


class CachedTextEncoder(nn.Module):
    """``encode(captions, rows)`` as the wrapped encoder, plain captions served from ``folder``.

    ``hits`` / ``misses`` count plain captions read from the cache (memory or disk) / encoded and written;
    ``encoded_with_placeholders`` counts captions sent to the encoder because they hold placeholders;
    ``stand_ins`` the encoder calls made only because another process needed one (``collective``)."""

    def __init__(self, encoder: nn.Module, folder: str | Path):
        super().__init__()
        self.encoder = encoder
        # FSDP with T5's blocks sharded: every T5 call is a collective, so all processes must call it alike
        self.collective = False
        self.folder = Path(folder) / encoder.identity()
        self.memory: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.hits = self.misses = self.encoded_with_placeholders = self.stand_ins = 0

    @property
    def t5_dim(self) -> int:
        return self.encoder.t5_dim

    @property
    def pooled_dim(self) -> int:
        return self.encoder.pooled_dim

    def embedding_std(self) -> float:
        return self.encoder.embedding_std()

    def identity(self) -> str:
        return self.encoder.identity()

    def path(self, caption: str) -> Path:
        return self.folder / f"{caption_key(caption)}.safetensors"

    def read(self, caption: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(prompt_embeds (T, D), pooled (P,)) from memory or disk, or None."""
        if caption in self.memory:
            return self.memory[caption]
        path = self.path(caption)
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("caption") != caption:  # a hash collision or a foreign file: re-encode
                return None
            entry = f.get_tensor("prompt_embeds"), f.get_tensor("pooled")
        self.memory[caption] = entry
        return entry

    def write(self, caption: str, embeds: torch.Tensor, pooled: torch.Tensor) -> None:
        entry = embeds.detach().cpu().contiguous(), pooled.detach().cpu().contiguous()
        self.memory[caption] = entry
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(caption)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"prompt_embeds": entry[0], "pooled": entry[1]}, str(tmp), metadata={"caption": caption})
        os.replace(tmp, path)

    def encode(self, captions: Sequence[str], rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As the wrapped encoder's ``encode``: prompt_embeds (B, T, D), pooled (B, P), slots (B, T)."""
        captions = list(captions)
        slots = self.encoder.placeholder_slots(captions).to(rows.device)
        plain = (slots < 0).all(dim=1).tolist()
        entries: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        missing: list[str] = []  # plain captions to encode, each once
        for i, c in enumerate(captions):
            if plain[i] and c not in missing:
                entry = self.read(c)
                if entry is None:
                    missing.append(c)
                else:
                    entries[i] = entry
                    self.hits += 1
            elif plain[i]:
                self.hits += 1  # a repeat of a caption encoded for this batch
        held = [i for i, is_plain in enumerate(plain) if not is_plain]
        # under FSDP a process with nothing to encode runs its first caption too (and keeps it in the graph, as
        # T5's backward all-gathers as well), when any process encodes
        any_missing, any_held = (any_true(bool(missing)), any_true(bool(held))) if self.collective else (missing, held)
        if any_missing:
            with torch.no_grad():
                e, p, _ = self.encoder.encode(missing or captions[:1], rows)
            self.stand_ins += not missing
            for j, c in enumerate(missing):
                self.write(c, e[j], p[j])
            self.misses += len(missing)
        for i, c in enumerate(captions):
            if plain[i] and i not in entries:
                entries[i] = self.memory[c]
        keep = None
        if any_held:
            e, p, _ = self.encoder.encode([captions[i] for i in held] or captions[:1], rows)
            self.encoded_with_placeholders += len(held)
            self.stand_ins += not held
            for j, i in enumerate(held):
                entries[i] = e[j], p[j]
            keep = None if held else e.float().sum() + p.float().sum()
        dtype = next(iter(entries.values()))[0].dtype
        embeds = torch.stack([entries[i][0].to(rows.device, dtype) for i in range(len(captions))])
        pooled = torch.stack([entries[i][1].to(rows.device, dtype) for i in range(len(captions))])
        if not held:  # keep the rows in the graph (zero gradient): DDP sees every parameter used, AdamW steps
            embeds = embeds + rows.sum().to(dtype) * 0  # them as it would without the cache (a zero grad, not None)
        if keep is not None:  # the collective stand-in call: in the graph, contributing zero
            embeds = embeds + keep.to(dtype) * 0
        return embeds, pooled, slots
