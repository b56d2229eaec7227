"""The DIFFUSION_MODEL wrapper that adds DreamO's condition embedding, per batch item.

Installed by Load DreamO LoRA; it holds nothing. Per call it finds x / ref_latents / transformer_options in the
arguments of Flux ``_forward``, reads each batch item's own DreamO layout (``sampling_run``: found by the uuid
ComfyUI gives each cond, outside the diffusion model), and when any item has one installs a one-shot ``post_input`` patch into a COPY of
transformer_options. The patch adds ``task[1]`` to the target tokens and ``task[0] + idx[k]`` to the tokens of
reference k of THAT item (zeros for items without DreamO), and rewrites img_ids the official way (rounded through
the compute dtype); a reference with a placement box gets ids mapped into its box instead. When an item's
reference strength differs from 1 at this sigma, the call also gets an additive ``attention_mask`` bias (merged
with any existing one). Every other argument passes through untouched; a call with no DreamO item is not changed
at all. Another ``post_input`` patch or RoPE options are refused with a clear error (``check_no_foreign_patches``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ...dreamo_core.conditioning.embeddings import add_condition_embedding
from ...dreamo_core.conditioning.position_ids import token_grid
from ...dreamo_core.conditioning.reference_strength import batched_key_bias, merged_mask
from ...dreamo_core.conditioning.token_layout import TokenGrid
from ..node_names import APPLY_CONDITIONING
from .conditioning_layout import ItemLayout
from .flux_arguments import get_argument, with_argument
from .routing_record import ROUTING_KEY
from .sampling_run import ITEMS_KEY, RUN_KEY
from .transformer_options import (
    check_no_foreign_patches,
    check_no_foreign_references,
    current_sigma,
    with_post_input,
)

WHERE = APPLY_CONDITIONING


class DreamOEmbeddingPatch:
    """One-shot post_input patch. emb: (B, L, D) on the model's device, in the tables' dtype; ``ids(dtype, device)``
    gives the (L, 3) or (B, L, 3) position ids of ``[target | refs]`` rounded through ``dtype``."""

    def __init__(self, emb: torch.Tensor, ids: Callable[[torch.dtype, torch.device], torch.Tensor],
                 description: str):
        self.emb, self.ids, self.description = emb, ids, description

    def __call__(self, kwargs: dict) -> dict:
        img, img_ids = kwargs["img"], kwargs["img_ids"]  # (B, L, D), (B, L, 3)
        if img_ids.shape[1] != self.emb.shape[1]:
            raise ValueError(f"{WHERE}: the model has {img_ids.shape[1]} image position ids, but DreamO's tokens are "
                             f"{self.emb.shape[1]} ({self.description}); another node changed the tokens")
        # rounded through the compute dtype as the official pipeline (bf16 ids above 256 are even), then kept in
        # the ids dtype of this ComfyUI (the compute dtype up to 0.3.71, float32 from 0.3.72 on)
        ids = self.ids(img.dtype, img_ids.device).to(img_ids.dtype)
        return {**kwargs, "img": add_condition_embedding(img, self.emb, WHERE),
                "img_ids": ids.expand(img_ids.shape[0], -1, -1)}


def dreamo_forward_wrapper(executor: Any, *args: Any, **kwargs: Any) -> Any:
    """DIFFUSION_MODEL wrapper ``(executor, *args, **kwargs)``: DreamO for the batch items that carry a layout.

    Per step the work outside the transformer is a memo lookup in the run (tables copied once per device,
    embedding and ids once per batch layout). Which items are DreamO is decided from Python facts (the uuids of
    the call), never from tensors: no sync, no graph break under torch.compile."""
    x = get_argument(executor, args, kwargs, "x")  # (B, C, H, W)
    options = get_argument(executor, args, kwargs, "transformer_options") or {}
    ref_latents = get_argument(executor, args, kwargs, "ref_latents")
    run, items = options.get(RUN_KEY), options.get(ITEMS_KEY) or (None,) * x.shape[0]
    check_no_foreign_references(ref_latents, items)
    if not any(items):
        return executor(*args, **kwargs)  # no DreamO item (e.g. the negative prompt): the call is not changed
    check_no_foreign_patches(options)
    ref_grids = checked_reference_grids(ref_latents, kwargs.get("ref_latents_method"), items)
    target = token_grid(tuple(x.shape[-2:]))
    patch = DreamOEmbeddingPatch(run.embedding(x.device, target, ref_grids, items),
                                 run.position_ids(target, ref_grids, items), f"target {target} + references {ref_grids}")
    call_options = with_post_input(options, patch)
    routing = options.get(ROUTING_KEY)
    if routing is not None and ref_grids:
        text_tokens = get_argument(executor, args, kwargs, "context").shape[1]
        first = next(k for k, item in enumerate(items) if item is not None)
        override = routing.override_for_call(current_sigma(options), first, text_tokens, target,
                                             [r * c for r, c in ref_grids], options.get("optimized_attention_override"))
        if override is not None:
            call_options = {**call_options, "optimized_attention_override": override}
    args, kwargs = with_argument(executor, args, kwargs, "transformer_options", call_options)
    if any(i is not None and i.needs_bias for i in items):  # strength 1 over the whole schedule: no mask at all
        context = get_argument(executor, args, kwargs, "context")  # (B, T, C)
        bias = batched_key_bias([None if i is None else i.controls for i in items], options.get("sigmas"),
                                context.shape[1], target[0] * target[1], [r * c for r, c in ref_grids], x.dtype,
                                x.device)
        kwargs = {**kwargs, "attention_mask": merged_mask(kwargs.get("attention_mask"), bias, WHERE)}
    return executor(*args, **kwargs)


def checked_reference_grids(ref_latents: Sequence[torch.Tensor] | None, method: str | None,
                            items: Sequence[ItemLayout | None]) -> list[TokenGrid]:
    """Token grids of the references the model received; ValueError unless they are each DreamO item's own (a
    batch shares one ``ref_latents``: ComfyUI batches conds only with references of the same shapes)."""
    refs = list(ref_latents or [])
    grids = [token_grid(tuple(r.shape[-2:])) for r in refs]
    for item in dict.fromkeys(i for i in items if i is not None):
        if len(refs) != len(item.indices):
            raise ValueError(
                f"{WHERE}: a prompt reaching the sampler has {len(refs)} reference latent(s), but its DreamO layout "
                f"has {len(item.indices)} reference(s) (indices {list(item.indices)}); another node added or removed "
                "reference latents after Apply DreamO Conditioning. Put the references through DreamO Encode "
                "Reference into Apply DreamO Conditioning and do not add other references after it")
        for k, (got, want) in enumerate(zip(grids, item.grids)):
            if got != want:
                raise ValueError(f"{WHERE}: reference {k + 1} (index {item.indices[k]}) has {got[0]}x{got[1]} tokens "
                                 f"at run time, expected {want[0]}x{want[1]} as encoded")
    if refs and method != "uxo":
        raise ValueError(f"{WHERE}: reference method is {method!r}, DreamO needs 'uxo'; "
                         "do not change it after Apply DreamO Conditioning")
    return grids
