"""DreamO forward on a diffusers ``FluxTransformer2DModel`` without replacing any of its methods.

Per call: reference tokens are concatenated after the target tokens, position ids follow DreamO's diagonal
scheme (or a reference's placement box), the condition embedding is added to the output of ``x_embedder`` by a
forward hook that lives only for this call (removed in ``finally``), a reference strength other than 1 becomes an
additive attention bias on its keys, and the output is sliced back to the target tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..conditioning.embeddings import ConditionEmbeddings, add_condition_embedding, build_condition_embeddings
from ..conditioning.placement import Box
from ..conditioning.position_ids import reference_position_ids
from ..conditioning.reference_strength import is_neutral, strength_bias
from ..conditioning.token_layout import TokenGrid


@dataclass(frozen=True)
class ReferenceTokens:
    """One packed reference. tokens: (B, rows*cols, 64) clean model latents; grid: (rows, cols); index: 1..9;
    box: optional placement box (None = DreamO's diagonal ids)."""

    tokens: torch.Tensor
    grid: TokenGrid
    index: int
    box: Box | None = None


@dataclass(frozen=True)
class DreamOInputs:
    """What one DreamO transformer call gets besides the text. hidden: (B, L, 64) ``[target | refs]``; img_ids:
    (L, 3); embedding: (L, D) or None (plain FLUX); bias: (B, 1, 1, T + L) attention bias or None (strength 1)."""

    hidden: torch.Tensor
    img_ids: torch.Tensor
    embedding: torch.Tensor | None
    bias: torch.Tensor | None


@contextmanager
def added_to_output(module: nn.Module, addend: torch.Tensor) -> Iterator[None]:
    """While active, ``module(x)`` returns ``module(x) + addend`` (a per-instance forward hook)."""

    def hook(_mod: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
        return add_condition_embedding(out, addend)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def dreamo_inputs(latents: torch.Tensor, target_grid: TokenGrid, refs: Sequence[ReferenceTokens],
                  tables: ConditionEmbeddings | None, text_tokens: int, ids_dtype: torch.dtype,
                  strengths: Sequence[float] | None = None) -> DreamOInputs:
    """The tokens, ids, embedding and strength bias of ``[target | refs]`` (latents: (B, rows*cols, 64)).
    strengths: each reference's strength at this step (None = 1 for all)."""
    if latents.ndim != 3 or latents.shape[1] != target_grid[0] * target_grid[1]:
        raise ValueError(f"latents must be (B, {target_grid[0] * target_grid[1]}, C) for grid {target_grid}, got {tuple(latents.shape)}")
    if tables is None and refs:
        raise ValueError("references need DreamO embedding tables (load dreamo.safetensors or embedding.safetensors)")
    b, n_target = latents.shape[:2]
    for r in refs:
        if r.tokens.shape[0] != b or r.tokens.shape[1] != r.grid[0] * r.grid[1]:
            raise ValueError(f"reference {r.index}: tokens {tuple(r.tokens.shape)} do not match batch {b} and grid {r.grid}")
    if strengths is not None and len(strengths) != len(refs):
        raise ValueError(f"{len(strengths)} strengths for {len(refs)} references")
    lengths = [r.tokens.shape[1] for r in refs]
    hidden = torch.cat([latents, *[r.tokens.to(latents) for r in refs]], dim=1)
    ids = reference_position_ids(target_grid, [r.grid for r in refs], [r.box for r in refs], ids_dtype)
    emb = None if tables is None else build_condition_embeddings(tables, n_target, lengths, [r.index for r in refs])
    bias = None
    if strengths is not None and not is_neutral(strengths):  # strength 1 everywhere: no mask, plain DreamO
        bias = strength_bias(strengths, text_tokens, n_target, lengths, b, latents.dtype, latents.device)
    return DreamOInputs(hidden, ids.to(latents.device), emb, bias)


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
    strengths: Sequence[float] | None = None,
) -> torch.Tensor:
    """Velocity for the target tokens.

    latents: (B, rows*cols, 64); sigma: (B,) in [0, 1]; guidance: (B,) or None; pooled: (B, P);
    prompt_embeds: (B, T, J). ``tables=None`` gives the plain FLUX forward (DreamO's true-CFG negative pass:
    no references allowed then). Ids are built in float32 and cast to ``ids_dtype`` (default: the
    transformer's dtype, as the official pipeline builds them in the prompt dtype). strengths: per reference
    (DreamTuner-style weighted attention, log w on its keys; None = 1).
    Returns (B, rows*cols, 64).
    """
    ids_dtype = ids_dtype or next(transformer.parameters()).dtype
    inputs = dreamo_inputs(latents, target_grid, refs, tables, prompt_embeds.shape[1], ids_dtype, strengths)
    return transformer_on_inputs(transformer, inputs, latents.shape[1], sigma, guidance, pooled, prompt_embeds,
                                 joint_attention_kwargs)


def transformer_on_inputs(transformer: nn.Module, inputs: DreamOInputs, n_target: int, sigma: torch.Tensor,
                          guidance: torch.Tensor | None, pooled: torch.Tensor, prompt_embeds: torch.Tensor,
                          joint_attention_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
    """One transformer call on ``dreamo_inputs``' tokens: the embedding added after ``x_embedder`` for this call
    only, the strength bias as the attention mask, text ids zeros in the image ids' dtype; returns the first
    ``n_target`` tokens of the output (B, n_target, 64)."""
    attention_kwargs = dict(joint_attention_kwargs or {})
    if inputs.bias is not None:
        attention_kwargs["attention_mask"] = inputs.bias
    call = dict(
        hidden_states=inputs.hidden,
        timestep=sigma,
        guidance=guidance,
        pooled_projections=pooled,
        encoder_hidden_states=prompt_embeds,
        txt_ids=torch.zeros(prompt_embeds.shape[1], 3, device=inputs.hidden.device, dtype=inputs.img_ids.dtype),
        img_ids=inputs.img_ids,
        joint_attention_kwargs=attention_kwargs or None,
        return_dict=False,
    )
    if inputs.embedding is None:
        return transformer(**call)[0][:, :n_target]
    with added_to_output(transformer.x_embedder, inputs.embedding):
        out = transformer(**call)[0]
    return out[:, :n_target]


def true_cfg_velocity(v_pos: torch.Tensor, v_neg: torch.Tensor, scale: float) -> torch.Tensor:
    """The official true-CFG combination ``v_neg + scale * (v_pos - v_neg)`` (any shape; ``v_neg`` comes from the
    negative prompt's pass without references or DreamO embeddings)."""
    return v_neg + scale * (v_pos - v_neg)
