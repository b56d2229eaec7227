"""Embedded tiny random-weight FLUX components: the generator's default when no weights are given, and test models.

Nothing here resembles a trained model: outputs are structured noise. They exercise every code path of
the real pipeline (VAE, packing, ids, embeddings, sampling) in seconds on a CPU.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from ..conditioning.embeddings import ConditionEmbeddings
from ..conditioning.placeholders import placeholder_index
from ..spec import FLUX_DEV, DreamOSpec

TINY_HIDDEN = 32
TINY_TEXT_DIM = 32
TINY_POOLED_DIM = 32


def tiny_spec(num_double_blocks: int = 1, num_single_blocks: int = 1) -> DreamOSpec:
    """DreamOSpec of the tiny transformer below (hidden 32, text width 32)."""
    return DreamOSpec(hidden_size=TINY_HIDDEN, num_double_blocks=num_double_blocks,
                      num_single_blocks=num_single_blocks, t5_dim=TINY_TEXT_DIM)


TINY_TRANSFORMER = dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                        joint_attention_dim=TINY_TEXT_DIM, pooled_projection_dim=TINY_POOLED_DIM, axes_dims_rope=[4, 6, 6])


def flux_transformer(seed: int = 0, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                     **sizes: object) -> nn.Module:
    """A random-weight diffusers ``FluxTransformer2DModel`` with FLUX's structure (patch 1, FLUX's 64 packed latent
    channels, guidance embedding). ``sizes`` override ``TINY_TRANSFORMER`` (e.g. the FLUX.1-dev widths of the
    benchmarks, ``FLUX_DEV.diffusers_config(...)``).
    Seeded by ``seed`` without touching the global RNG; built directly on ``device``; in eval mode."""
    from diffusers import FluxTransformer2DModel

    config = {"patch_size": 1, "in_channels": FLUX_DEV.packed_channels, "guidance_embeds": True, **TINY_TRANSFORMER,
              **sizes}
    with torch.random.fork_rng(devices=[]), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        model = FluxTransformer2DModel(**config)
    return (model if dtype is None else model.to(dtype)).eval()


def tiny_transformer(seed: int = 0, num_layers: int = 1, num_single_layers: int = 1) -> nn.Module:
    """The generator's tiny FLUX (hidden 32, 2 heads x 16, text width 32)."""
    return flux_transformer(seed, num_layers=num_layers, num_single_layers=num_single_layers)


def tiny_vae(seed: int = 0) -> nn.Module:
    """A diffusers AutoencoderKL with FLUX's latent layout (16 channels, 8x downscale, shift/scale) and tiny widths."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[32] * 4, layers_per_block=1,
        latent_channels=16, norm_num_groups=32, shift_factor=0.1159, scaling_factor=0.3611,
        use_quant_conv=False, use_post_quant_conv=False,
    ).eval()


def tiny_tables(spec: DreamOSpec, seed: int = 0) -> ConditionEmbeddings:
    """Random task (2, D) / idx (10, D) tables for ``spec``."""
    g = torch.Generator().manual_seed(seed)
    return ConditionEmbeddings(torch.randn(spec.num_task_rows, spec.hidden_size, generator=g),
                               torch.randn(spec.num_idx_rows, spec.hidden_size, generator=g)).validate(spec)


class TinyPromptEncoder:
    """Stand-in for CLIP-L + T5: whitespace tokens hashed into a fixed random table.

    ``encode(prompt)`` -> (prompt_embeds (1, seq_len, text_dim), pooled (1, pooled_dim)). A token ``[ref#i]``
    uses row i-1 of ``placeholder_rows`` (10, text_dim) when given, as DreamO's T5 rows do.
    """

    def __init__(self, text_dim: int = TINY_TEXT_DIM, pooled_dim: int = TINY_POOLED_DIM, seq_len: int = 16,
                 vocab: int = 1024, seed: int = 0, placeholder_rows: torch.Tensor | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab, text_dim, generator=g)
        self.pool = torch.randn(text_dim, pooled_dim, generator=g) / text_dim**0.5
        self.seq_len, self.vocab = seq_len, vocab
        self.placeholder_rows = placeholder_rows

    def token_id(self, word: str) -> int:
        return int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little") % self.vocab

    def encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        words = prompt.split()[: self.seq_len]
        rows = torch.zeros(self.seq_len, self.table.shape[1])
        for i, w in enumerate(words):
            index = placeholder_index(w)
            if self.placeholder_rows is not None and index is not None:
                rows[i] = self.placeholder_rows[index - 1]
            else:
                rows[i] = self.table[self.token_id(w)]
        pooled = rows[: max(len(words), 1)].mean(0) @ self.pool
        return rows[None], pooled[None]
