"""The per-model DIFFUSION_MODEL wrapper that adds DreamO's condition embedding.

Per call it finds x / ref_latents / transformer_options in the arguments of Flux ``_forward``, and for the
positive-prompt items installs a one-shot ``post_input`` patch into a COPY of transformer_options. The patch
adds ``task[1]`` to the target tokens and ``task[0] + idx[k]`` to the tokens of reference k, and rewrites
img_ids the official way (rounded through the compute dtype); a reference with a placement box gets ids mapped
into its box instead. When a reference strength differs from 1 at this sigma, the call also gets an additive
``attention_mask`` bias (merged with any existing one). Every other argument passes through untouched. Another
``post_input`` patch or RoPE options on the same model are refused with a clear error (see
``check_no_foreign_patches``). The wrapper holds only what Apply set (immutable per run; model_options are shared
between clones since ComfyUI 0.14 and may run on several GPUs at once) plus a memo of values that are pure
functions of their key (tables per device, embedding and ids per layout).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ...dreamo_core.conditioning.embeddings import (
    ConditionEmbeddings,
    add_condition_embedding,
    batched_condition_embeddings,
)
from ...dreamo_core.conditioning.placement import Box
from ...dreamo_core.conditioning.position_ids import reference_position_ids, token_grid
from ...dreamo_core.conditioning.reference_strength import ReferenceControl, merged_mask, scheduled_key_bias
from ...dreamo_core.conditioning.token_layout import TokenGrid
from ..node_names import APPLY_CONDITIONING
from .flux_arguments import get_argument, with_argument
from .tensor_memo import TensorMemo
from .transformer_options import (
    RUN_KEY,
    check_no_foreign_patches,
    check_no_negative_references,
    cond_items,
    current_sigma,
    with_post_input,
)

if TYPE_CHECKING:
    from .routing_record import RoutingRecorder, RoutingRun

WHERE = APPLY_CONDITIONING


class DreamOEmbeddingPatch:
    """One-shot post_input patch. emb: (B, L, D) on the model's device, in the tables' dtype; ``ids(dtype, device)``
    gives the (L, 3) position ids of ``[target | refs]`` rounded through ``dtype``."""

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


class DreamOWrapper:
    """DIFFUSION_MODEL wrapper ``(executor, *args, **kwargs)``. Holds the tables and the reference layout
    (indices, token grids, controls, boxes) Apply DreamO Conditioning put into the positive conditioning.

    Per step the work outside the transformer is a memo lookup: the tables are copied once per device, and the
    embedding and ids once per layout (pure functions of their key, so the memo may be shared by clones). The
    positive/negative split and the need for a strength bias are decided from Python facts (no sync, no graph
    break under torch.compile)."""

    def __init__(self, tables: ConditionEmbeddings, indices: Sequence[int], grids: Sequence[TokenGrid],
                 controls: Sequence[ReferenceControl] = (), boxes: Sequence[Box | None] = (),
                 recorder: RoutingRecorder | None = None):
        self.tables = tables
        self.recorder = recorder
        self.indices = list(indices)
        self.grids = [tuple(g) for g in grids]
        self.controls = list(controls) or [ReferenceControl()] * len(self.indices)
        self.boxes = list(boxes) or [None] * len(self.indices)
        self.needs_bias = not all(c.is_neutral for c in self.controls)
        self.memo = TensorMemo()

    def to(self, device_or_dtype: Any) -> DreamOWrapper:
        """Model casts (fp8 arrives as float8_e4m3fn) do not touch the tables: they are copied to the model's
        device, in their own dtype, on first use there."""
        return self

    def tables_on(self, device: torch.device) -> ConditionEmbeddings:
        return self.memo.get(("tables", device), lambda: self.tables.to(device=device))

    def embedding(self, device: torch.device, target: TokenGrid, ref_grids: Sequence[TokenGrid],
                  items: tuple[bool, ...]) -> torch.Tensor:
        """(B, L, D) condition embedding on ``device`` for this batch layout (zeros on negative items)."""
        def build() -> torch.Tensor:
            return batched_condition_embeddings(self.tables_on(device), target[0] * target[1],
                                                [r * c for r, c in ref_grids], self.indices, items)
        return self.memo.get(("embedding", device, target, tuple(ref_grids), items), build)

    def position_ids(self, target: TokenGrid, ref_grids: Sequence[TokenGrid]) -> Callable:
        def ids(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
            return self.memo.get(("ids", device, dtype, target, tuple(ref_grids)),
                                 lambda: reference_position_ids(target, ref_grids, self.boxes, dtype, device))
        return ids

    def __call__(self, executor: Any, *args: Any, **kwargs: Any) -> Any:
        x = get_argument(executor, args, kwargs, "x")  # (B, C, H, W)
        options = get_argument(executor, args, kwargs, "transformer_options") or {}
        ref_latents = get_argument(executor, args, kwargs, "ref_latents")
        items = cond_items(options.get("cond_or_uncond"), x.shape[0])
        check_no_negative_references(ref_latents, items)
        if not any(items):
            return executor(*args, **kwargs)  # negative pass: no references, no embedding
        check_no_foreign_patches(options)
        ref_grids = self.check_references(ref_latents, kwargs.get("ref_latents_method"))
        target = token_grid(tuple(x.shape[-2:]))
        patch = DreamOEmbeddingPatch(self.embedding(x.device, target, ref_grids, items),
                                     self.position_ids(target, ref_grids), f"target {target} + references {ref_grids}")
        call_options = with_post_input(options, patch)
        run = options.get(RUN_KEY)
        if self.recorder is not None and run is not None and self.recorder.active(current_sigma(options)):
            call_options = self.with_recorder_override(call_options, run, executor, args, kwargs, target, ref_grids)
        args, kwargs = with_argument(executor, args, kwargs, "transformer_options", call_options)
        if self.needs_bias:  # strength 1 over the whole schedule: no mask, the call stays bit-identical
            context = get_argument(executor, args, kwargs, "context")  # (B, T, C)
            bias = scheduled_key_bias(self.controls, options.get("sigmas"), context.shape[1], target[0] * target[1],
                                      [r * c for r, c in ref_grids], x.shape[0], x.dtype, x.device)
            kwargs = {**kwargs, "attention_mask": merged_mask(kwargs.get("attention_mask"), bias, WHERE)}
        return executor(*args, **kwargs)

    def with_recorder(self, recorder: RoutingRecorder) -> DreamOWrapper:
        """The same wrapper, also recording routing maps into ``recorder``."""
        return DreamOWrapper(self.tables, self.indices, self.grids, self.controls, self.boxes, recorder)

    def with_recorder_override(self, options: dict, run: RoutingRun, executor: Any, args: tuple, kwargs: dict,
                               target: TokenGrid, ref_grids: Sequence[TokenGrid]) -> dict:
        """A copy of ``options`` whose attention override records routing maps into ``run`` (chaining any existing one)."""
        text_tokens = get_argument(executor, args, kwargs, "context").shape[1]
        override = self.recorder.override(run, text_tokens, target, [r * c for r, c in ref_grids],
                                          options.get("optimized_attention_override"))
        return {**options, "optimized_attention_override": override}

    def check_references(self, ref_latents: Sequence[torch.Tensor] | None, method: str | None) -> list[TokenGrid]:
        """Token grids of the references the model received; ValueError unless they are the applied ones."""
        refs = list(ref_latents or [])
        if len(refs) != len(self.indices):
            raise ValueError(
                f"{WHERE}: the positive prompt reaching the sampler has {len(refs)} reference latent(s), but "
                f"{len(self.indices)} DreamO reference(s) were applied; connect the CONDITIONING output of "
                f"Apply DreamO Conditioning to the sampler's positive input and do not add other references after it"
            )
        if refs and method != "uxo":
            raise ValueError(f"{WHERE}: reference method is {method!r}, DreamO needs 'uxo'; "
                             "do not change it after Apply DreamO Conditioning")
        grids = [token_grid(tuple(r.shape[-2:])) for r in refs]
        for k, (got, want) in enumerate(zip(grids, self.grids)):
            if got != want:
                raise ValueError(f"{WHERE}: reference {k + 1} (index {self.indices[k]}) has {got[0]}x{got[1]} tokens "
                                 f"at run time, expected {want[0]}x{want[1]} as encoded")
        return grids
