"""DreamO forward on a diffusers ``FluxTransformer2DModel`` without replacing any of its methods.

Per call: reference tokens are concatenated after the target tokens, position ids follow DreamO's diagonal
scheme, the condition embedding is added to the output of ``x_embedder`` by a forward hook that lives only
for this call (removed in ``finally``), and the output is sliced back to the target tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..conditioning.embeddings import ConditionEmbeddings, build_condition_embeddings
from ..conditioning.position_ids import TokenGrid, dreamo_position_ids


@dataclass(frozen=True)
class ReferenceTokens:
    """One packed reference. tokens: (B, rows*cols, 64) clean model latents; grid: (rows, cols); index: 1..9."""

    tokens: torch.Tensor
    grid: TokenGrid
    index: int


@contextmanager
def added_to_output(module: nn.Module, addend: torch.Tensor) -> Iterator[None]:
    """While active, ``module(x)`` returns ``module(x) + addend`` (a per-instance forward hook)."""

    def hook(_mod: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
        if out.shape[-2] != addend.shape[-2]:
            raise ValueError(f"DreamO: condition embedding covers {addend.shape[-2]} tokens, the model saw {out.shape[-2]}")
        if out.shape[-1] != addend.shape[-1]:
            raise ValueError(f"DreamO: condition embedding width {addend.shape[-1]} does not match the model width "
                             f"{out.shape[-1]} (embeddings from another model?)")
        return out + addend.to(device=out.device, dtype=out.dtype)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def dreamo_transformer_forward(
    transformer: nn.Module,
    latents: torch.Tensor,
    target_grid: TokenGrid,
    refs: Sequence[ReferenceTokens],
    sigma: torch.Tensor,
    guidance: torch.Tensor | None,
    pooled: torch.Tensor,
    prompt_embeds: torch.Tensor,
    tables: ConditionEmbeddings | None,
    ids_dtype: torch.dtype | None = None,
    joint_attention_kwargs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Velocity for the target tokens.

    latents: (B, rows*cols, 64); sigma: (B,) in [0, 1]; guidance: (B,) or None; pooled: (B, P);
    prompt_embeds: (B, T, J). ``tables=None`` gives the plain FLUX forward (DreamO's true-CFG negative pass:
    no references allowed then). Ids are built in float32 and cast to ``ids_dtype`` (default: the
    transformer's dtype, as the official pipeline builds them in the prompt dtype).
    Returns (B, rows*cols, 64).
    """
    if latents.ndim != 3 or latents.shape[1] != target_grid[0] * target_grid[1]:
        raise ValueError(f"latents must be (B, {target_grid[0] * target_grid[1]}, C) for grid {target_grid}, got {tuple(latents.shape)}")
    if tables is None and refs:
        raise ValueError("references need DreamO embedding tables (load dreamo.safetensors or embedding.safetensors)")
    b, n_target = latents.shape[:2]
    for r in refs:
        if r.tokens.shape[0] != b or r.tokens.shape[1] != r.grid[0] * r.grid[1]:
            raise ValueError(f"reference {r.index}: tokens {tuple(r.tokens.shape)} do not match batch {b} and grid {r.grid}")
    param = next(transformer.parameters())
    ids_dtype = ids_dtype or param.dtype
    hidden = torch.cat([latents, *[r.tokens.to(latents) for r in refs]], dim=1)
    img_ids = dreamo_position_ids(target_grid, [r.grid for r in refs], dtype=ids_dtype).to(latents.device)
    txt_ids = torch.zeros(prompt_embeds.shape[1], 3, device=latents.device, dtype=ids_dtype)
    call = dict(
        hidden_states=hidden,
        timestep=sigma,
        guidance=guidance,
        pooled_projections=pooled,
        encoder_hidden_states=prompt_embeds,
        txt_ids=txt_ids,
        img_ids=img_ids,
        joint_attention_kwargs=joint_attention_kwargs,
        return_dict=False,
    )
    if tables is None:
        return transformer(**call)[0][:, :n_target]
    emb = build_condition_embeddings(tables, n_target, [r.tokens.shape[1] for r in refs], [r.index for r in refs])
    with added_to_output(transformer.x_embedder, emb):
        out = transformer(**call)[0]
    return out[:, :n_target]
