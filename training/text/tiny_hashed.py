"""A small deterministic stand-in for T5 + CLIP used by the tests and the CPU demo.

Words are hashed into a frozen random table (no vocabulary file, no download). ``[ref#1]..[ref#9]`` and
``[res]`` become single tokens whose embeddings are *not* taken from that table: their slot (0..9) is
returned so the trainer can substitute its trainable ``(10, t5_dim)`` placeholder rows, which is what the
official DreamO does with the last 10 rows of ``dreamo_t5_embedding`` (rows ``[ref#1..9]``, ``[res]``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

TOKEN = re.compile(r"\[ref#[1-9]\]|\[res\]|[a-z0-9]+")
PAD_ID = 0
CONTEXT_WEIGHT = 0.5  # weight of each previous token's rotated embedding in a contextual token


@dataclass(frozen=True)
class TokenizedText:
    """ids: (B, T) hashed word ids (0 = padding); slots: (B, T) placeholder row 0..9 or -1."""

    ids: torch.Tensor
    slots: torch.Tensor


def placeholder_slot(token: str) -> int:
    """``[ref#k]`` -> k - 1, ``[res]`` -> 9, anything else -> -1."""
    if token == "[res]":
        return 9
    if token.startswith("[ref#"):
        return int(token[5]) - 1
    return -1


class TinyTextEncoder(nn.Module):
    """Hashed-word embeddings. ``forward(tokens) -> (prompt_embeds (B, T, t5_dim), pooled (B, pooled_dim))``.

    Frozen and seeded: the same caption gives the same tensors in every process. Placeholder positions hold
    zeros here; the trainer substitutes its placeholder rows there (see ``training.model``)."""

    def __init__(self, t5_dim: int = 32, pooled_dim: int = 32, max_tokens: int = 16, vocab: int = 4096, seed: int = 0,
                 context: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.max_tokens, self.vocab, self.context = max_tokens, vocab, context
        self.register_buffer("table", torch.randn(vocab, t5_dim, generator=g) * 0.5)
        self.register_buffer("pool_proj", torch.randn(t5_dim, pooled_dim, generator=g) / t5_dim**0.5)
        self.table[PAD_ID] = 0.0
        # context k: fixed random orthogonal maps of the k previous tokens, (context, t5_dim, t5_dim)
        mix = torch.linalg.qr(torch.randn(context, t5_dim, t5_dim, generator=g))[0] * CONTEXT_WEIGHT if context else \
            torch.zeros(0, t5_dim, t5_dim)
        self.register_buffer("mix", mix)

    def tokenize(self, captions: list[str]) -> TokenizedText:
        """Lower-cased words and placeholders, truncated / zero-padded to ``max_tokens``."""
        ids = torch.zeros(len(captions), self.max_tokens, dtype=torch.long)
        slots = torch.full((len(captions), self.max_tokens), -1, dtype=torch.long)
        for b, caption in enumerate(captions):
            for t, tok in enumerate(TOKEN.findall(caption.lower())[: self.max_tokens]):
                slots[b, t] = placeholder_slot(tok)
                ids[b, t] = 1 + zlib.crc32(tok.encode()) % (self.vocab - 1)
        return TokenizedText(ids, slots)

    def forward(self, tokens: TokenizedText, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (prompt_embeds (B, T, t5_dim), pooled (B, pooled_dim)). ``rows`` (10, t5_dim): placeholder rows
        substituted at the *input* (as DreamO's rows in T5's embedding table), zeros without; pooled ignores them
        (placeholders count as zero words, like CLIP, which never sees the rows)."""
        plain = self.table[tokens.ids] * (tokens.slots < 0).unsqueeze(-1)  # (B, T, t5_dim), placeholders zeroed
        words = (tokens.ids != PAD_ID).float().unsqueeze(-1)
        pooled = (plain * words).sum(1) / words.sum(1).clamp_min(1.0) @ self.pool_proj  # (B, pooled_dim)
        x = plain if rows is None else torch.where((tokens.slots >= 0)[..., None],
                                                   rows.to(plain.dtype)[tokens.slots.clamp_min(0)], plain)
        return self.contextualize(x), pooled

    def contextualize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) token embeddings -> (B, T, d): ``x_t + sum_k mix_k x_(t-k)`` for the ``context`` previous
        tokens (identity when ``context`` is 0). FLUX gives every text token the same position, so a bag of
        hashed words cannot say which colour goes with which place; T5's outputs can, and so do these."""
        out = x
        for k in range(1, min(self.context, x.shape[1] - 1) + 1):
            out = out + torch.nn.functional.pad(x[:, :-k] @ self.mix[k - 1].to(x.dtype), (0, 0, k, 0))
        return out

    @property
    def t5_dim(self) -> int:
        return int(self.table.shape[1])

    @property
    def pooled_dim(self) -> int:
        return int(self.pool_proj.shape[1])

    def embedding_std(self) -> float:
        """Std of the word table (scale for initialising the placeholder rows)."""
        return float(self.table.std())

    def placeholder_slots(self, captions: Sequence[str]) -> torch.Tensor:
        """(B, T) placeholder row per token (-1 elsewhere), as ``encode`` would see them (no encoding)."""
        return self.tokenize(list(captions)).slots

    def identity(self) -> str:
        """What the embeddings depend on besides the caption: sizes and a checksum of the frozen tables."""
        crc = zlib.crc32(self.table.float().numpy().tobytes())
        crc = zlib.crc32(self.pool_proj.float().numpy().tobytes(), crc)
        crc = zlib.crc32(self.mix.float().numpy().tobytes(), crc)
        return f"tiny-d{self.t5_dim}-c{self.context}-p{self.pooled_dim}-T{self.max_tokens}-v{self.vocab}-{self.table.dtype}-{crc:08x}"

    def encode(self, captions: Sequence[str], rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """rows: (10, t5_dim) placeholder rows, substituted at this encoder's *input* (with ``context`` 0 that is
        the output). Returns prompt_embeds (B, T, t5_dim), pooled (B, pooled_dim), slots (B, T) (placeholder row
        per token, -1 elsewhere)."""
        tokens = self.tokenize(list(captions))
        slots = tokens.slots.to(rows.device)
        emb, pooled = self(TokenizedText(tokens.ids.to(rows.device), slots), rows)
        return emb, pooled, slots
