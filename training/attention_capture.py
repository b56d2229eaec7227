"""Attention processors that compute FLUX attention unchanged AND record what L_route / L_holder need.

Set per model with ``transformer.set_attn_processor`` (``install_capture_processors``); no diffusers class or
method is replaced. Per call, a ``RoutingCapture`` reaches the processors through
``joint_attention_kwargs={"dreamo_capture": capture}``; without it they behave exactly like
``FluxAttnProcessor``. The capture recomputes, for the chosen layers only, the queries of the reference tokens
and the keys of the noisy-image / placeholder tokens (the same projections, norms and RoPE as the attention
itself, LoRA included), so the recorded maps carry gradients to the LoRA and the embeddings.

Gradient checkpointing: a checkpointed block is re-run in backward with the same capture object; the
processor then computes the same tensors again (as non-reentrant checkpointing requires) and overwrites its
record, which the loss has already consumed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor
from torch import nn

from dreamo_core.losses import placeholder_logits, reference_response


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


def _heads(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x.unflatten(-1, (-1, attn.head_dim))  # (B, L, D) -> (B, L, H, d)


def _rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, pos: torch.Tensor) -> torch.Tensor:
    """RoPE at sequence positions ``pos`` (L,) of the joint [text | image] sequence; x: (B, L, H, d)."""
    if rope is None:
        return x
    cos, sin = rope
    return apply_rotary_emb(x, (cos[pos], sin[pos]), sequence_dim=1)


class DreamOAttnProcessor:
    """``FluxAttnProcessor`` plus routing records for layer ``name`` (e.g. ``transformer_blocks.3``)."""

    def __init__(self, name: str):
        self.name = name
        self.inner = FluxAttnProcessor()

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        dreamo_capture: RoutingCapture | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        if dreamo_capture is not None and self.name in dreamo_capture.layers:
            self.record(attn, dreamo_capture, hidden_states, encoder_hidden_states, image_rotary_emb)
        return out

    def record(self, attn: nn.Module, cap: RoutingCapture, hidden: torch.Tensor, text: torch.Tensor | None,
               rope: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Store route (n_refs, B, N) and, with placeholders, holder (n_refs, B, n_refs) for this layer."""
        t, n, dev = cap.text_len, cap.n_target, hidden.device
        single = text is None  # single blocks see [text | image] as one sequence
        img = hidden[:, t:] if single else hidden  # (B, L_img, D)
        k_img = _rope(attn.norm_k(_heads(attn, attn.to_k(img[:, :n]))), rope, torch.arange(t, t + n, device=dev))
        k_ph = None
        if cap.placeholder_pos is not None:
            txt = hidden[:, :t] if single else text  # (B, T, D)
            gathered = torch.gather(txt, 1, cap.placeholder_pos[..., None].expand(-1, -1, txt.shape[-1]))
            proj, norm = (attn.to_k, attn.norm_k) if single else (attn.add_k_proj, attn.norm_added_k)
            # all text ids are 0 in FLUX/DreamO, so every text token gets the rotation of position 0
            zero = torch.zeros(gathered.shape[1], dtype=torch.long, device=dev)
            k_ph = _rope(norm(_heads(attn, proj(gathered))), rope, zero)  # (B, n_refs, H, d)
        route, holder = [], []
        for s, e in cap.ref_spans:
            q = _rope(attn.norm_q(_heads(attn, attn.to_q(img[:, s:e]))), rope, torch.arange(t + s, t + e, device=dev))
            route.append(reference_response(q, k_img, cap.mode))
            if k_ph is not None:
                holder.append(placeholder_logits(q, k_ph))
        cap.route[self.name] = torch.stack(route)
        if holder:
            cap.holder[self.name] = torch.stack(holder)


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
