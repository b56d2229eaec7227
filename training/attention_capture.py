"""Attention processors that compute FLUX attention unchanged AND record what L_route / L_holder need.

Set per model with ``transformer.set_attn_processor`` (``install_capture_processors``); no diffusers class or
method is replaced. Per call, a ``RoutingCapture`` reaches the processors through
``joint_attention_kwargs={"dreamo_capture": capture}``; without it they behave exactly like
``FluxAttnProcessor``. On the chosen layers the records are read off the attention's own queries and keys
(after norm and RoPE, LoRA included): the reference tokens' queries and the noisy-image / placeholder keys are
slices of the tensors the attention itself uses, so nothing is projected twice and the records carry gradients
to the LoRA and the embeddings. (An earlier version re-projected those tokens per captured layer; profiling the
trainer showed that re-projection, not the loss maths, was most of the routing losses' cost.)

Gradient checkpointing: a checkpointed block is re-run in backward with the same capture object; the
processor then computes the same tensors again (as non-reentrant checkpointing requires) and overwrites its
record, which the loss has already consumed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from diffusers.models.transformers.transformer_flux import (
    FluxAttnProcessor,
    _get_qkv_projections,
    apply_rotary_emb,
    dispatch_attention_fn,
)
from torch import nn

from dreamo_core.routing.losses import placeholder_logits_per_reference, reference_responses


@dataclass
class RoutingCapture:
    """Per-call routing data and the records.

    text_len: T text tokens in front of the image tokens; n_target: N noisy tokens; ref_spans: [start, end) of
    each reference's tokens in the image sequence (after the target); placeholder_pos: (B, n_refs) text position
    of each reference's own ``[ref#k]`` (None: no L_holder). Records per layer: route (n_refs, B, N) and
    holder (n_refs, B, n_refs) logits over the placeholders (reference i's own placeholder is slot i).
    """

    text_len: int
    n_target: int
    ref_spans: list[tuple[int, int]]
    layers: frozenset[str]
    mode: str = "softmax"
    placeholder_pos: torch.Tensor | None = None
    route: dict[str, torch.Tensor] = field(default_factory=dict)
    holder: dict[str, torch.Tensor] = field(default_factory=dict)

    def stacked_route(self) -> torch.Tensor:
        """(n_layers, n_refs, B, N) in layer-name order."""
        return torch.stack([self.route[k] for k in sorted(self.route)])

    def stacked_holder(self) -> torch.Tensor:
        """(n_layers, n_refs, B, n_refs) in layer-name order."""
        return torch.stack([self.holder[k] for k in sorted(self.holder)])


class DreamOAttnProcessor(FluxAttnProcessor):
    """``FluxAttnProcessor``'s attention plus routing records for layer ``name`` (e.g. ``transformer_blocks.3``).

    The attention is diffusers' own computation step for step (same projections, norms, RoPE and attention
    dispatch); the only addition is ``record`` on the joint [text | image] queries and keys after RoPE.
    """

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        dreamo_capture: RoutingCapture | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        query, key, value, encoder_query, encoder_key, encoder_value = _get_qkv_projections(
            attn, hidden_states, encoder_hidden_states
        )
        query = attn.norm_q(query.unflatten(-1, (-1, attn.head_dim)))  # (B, L, H, d)
        key = attn.norm_k(key.unflatten(-1, (-1, attn.head_dim)))
        value = value.unflatten(-1, (-1, attn.head_dim))
        if attn.added_kv_proj_dim is not None:
            encoder_query = attn.norm_added_q(encoder_query.unflatten(-1, (-1, attn.head_dim)))
            encoder_key = attn.norm_added_k(encoder_key.unflatten(-1, (-1, attn.head_dim)))
            encoder_value = encoder_value.unflatten(-1, (-1, attn.head_dim))
            query = torch.cat([encoder_query, query], dim=1)
            key = torch.cat([encoder_key, key], dim=1)
            value = torch.cat([encoder_value, value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        if dreamo_capture is not None and self.name in dreamo_capture.layers:
            self.record(dreamo_capture, query, key)
        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, backend=self._attention_backend,
            parallel_config=self._parallel_config,
        )
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:
            return hidden_states
        encoder_hidden_states, hidden_states = hidden_states.split_with_sizes(
            [encoder_hidden_states.shape[1], hidden_states.shape[1] - encoder_hidden_states.shape[1]], dim=1
        )
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states.contiguous()))
        return hidden_states, attn.to_add_out(encoder_hidden_states.contiguous())

    def record(self, cap: RoutingCapture, query: torch.Tensor, key: torch.Tensor) -> None:
        """Store route (n_refs, B, N) and, with placeholders, holder (n_refs, B, n_refs) for this layer.

        query, key: (B, T + L_img, H, d) joint [text | image] after norm and RoPE (text ids are all 0, so a
        placeholder key carries the rotation of position 0, as in the attention).
        """
        t, n = cap.text_len, cap.n_target
        first, last = cap.ref_spans[0][0], cap.ref_spans[-1][1]
        q_refs = query[:, t + first: t + last]  # (B, R, H, d), the references are contiguous after the target
        spans = [(s - first, e - first) for s, e in cap.ref_spans]
        cap.route[self.name] = reference_responses(q_refs, key[:, t: t + n], spans, cap.mode)
        if cap.placeholder_pos is not None:
            k_ph = torch.gather(key, 1, cap.placeholder_pos[..., None, None].expand(-1, -1, *key.shape[2:]))
            cap.holder[self.name] = placeholder_logits_per_reference(q_refs, k_ph, spans)


def layer_names(transformer: nn.Module) -> list[str]:
    """Block names owning an attention processor, e.g. ``transformer_blocks.0``, ``single_transformer_blocks.1``."""
    return [k[: -len(".attn.processor")] for k in transformer.attn_processors]


def select_layers(transformer: nn.Module, patterns: Sequence[str]) -> frozenset[str]:
    """Layer names matching any fnmatch pattern; raises if a pattern matches nothing."""
    names = layer_names(transformer)
    chosen = set()
    for p in patterns:
        hit = [n for n in names if fnmatch.fnmatchcase(n, p)]
        if not hit:
            raise ValueError(f"config loss.route_layers: {p!r} matches no layer; layers are {names[:3]}...{names[-1:]}")
        chosen.update(hit)
    return frozenset(chosen)


def install_capture_processors(transformer: nn.Module) -> None:
    """Give every attention module of this transformer its own ``DreamOAttnProcessor``."""
    transformer.set_attn_processor({k: DreamOAttnProcessor(k[: -len(".attn.processor")]) for k in transformer.attn_processors})
