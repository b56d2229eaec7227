"""The per-model DIFFUSION_MODEL wrapper that adds DreamO's condition embedding.

Per call it finds x / ref_latents / transformer_options in the arguments of Flux ``_forward``, and for the
positive-prompt items installs a one-shot ``post_input`` patch into a COPY of transformer_options. The patch
adds ``task[1]`` to the target tokens and ``task[0] + idx[k]`` to the tokens of reference k, and rewrites
img_ids the official way (float32, cast to the ids dtype); a reference with a placement box gets ids mapped
into its box instead. When a reference strength differs from 1 at this sigma, the call also gets an additive
``attention_mask`` bias (merged with any existing one). Every other argument passes through untouched. Another
``post_input`` patch or RoPE options on the same model are refused with a clear error (see
``check_no_foreign_patches``). The wrapper holds only what Apply set (immutable per run; model_options are shared
between clones since ComfyUI 0.14 and may run on several GPUs at once).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..dreamo_core.conditioning.batch_embeddings import batched_condition_embeddings, cond_item_mask
from ..dreamo_core.conditioning.embeddings import ConditionEmbeddings
from ..dreamo_core.conditioning.placement import Box, placed_reference_ids
from ..dreamo_core.conditioning.position_ids import TokenGrid, dreamo_position_ids, token_grid
from ..dreamo_core.conditioning.reference_strength import is_neutral
from .reference_controls import ReferenceControl, current_sigma, merged_mask, strength_bias

if TYPE_CHECKING:
    from .routing_recorder import RoutingRecorder, RoutingRun

WHERE = "Apply DreamO Conditioning"
RUN_KEY = "dreamo_routing_run"  # transformer_options key of a recording run (nodes/routing_recorder.py)


def method_argument_position(method: Callable, name: str, where: str) -> int:
    """Position of ``name`` among the positional parameters of ``method`` (self excluded). RuntimeError naming
    ``where`` when the signature cannot be read or has no such parameter: a renamed ComfyUI parameter must never
    make us read another argument by a guessed position."""
    try:
        params = list(inspect.signature(method).parameters)[1:]
    except (TypeError, ValueError) as e:
        raise RuntimeError(f"{where}: cannot read the signature of {getattr(method, '__qualname__', method)}: {e}; "
                           "this ComfyUI version is not supported by the DreamO pack") from e
    if name not in params:
        raise RuntimeError(f"{where}: {getattr(method, '__qualname__', method)} has no parameter {name!r} (it takes "
                           f"{params}); this ComfyUI version changed its Flux model and is not supported yet")
    return params.index(name)


def argument_position(executor: Any, name: str) -> int:
    """Position of ``name`` among the positional parameters of the wrapped Flux ``_forward``
    (``x, timestep, context, y, guidance, ref_latents, control, transformer_options`` in 0.3.64..0.33)."""
    forward = getattr(type(getattr(executor, "class_obj", None)), "_forward", None)
    if forward is None:
        raise RuntimeError(f"{WHERE}: the wrapped model {type(getattr(executor, 'class_obj', None)).__name__} has no "
                           "Flux _forward; DreamO runs only on ComfyUI's own FLUX model")
    return method_argument_position(forward, name, WHERE)


def get_argument(executor: Any, args: tuple, kwargs: dict, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    pos = argument_position(executor, name)
    return args[pos] if pos < len(args) else None


def with_argument(executor: Any, args: tuple, kwargs: dict, name: str, value: Any) -> tuple[tuple, dict]:
    """(args, kwargs) with ``name`` replaced by ``value`` (new containers; the inputs are not changed)."""
    pos = argument_position(executor, name)
    if name not in kwargs and pos < len(args):
        args = args[:pos] + (value,) + args[pos + 1 :]
    else:
        kwargs = {**kwargs, name: value}
    return args, kwargs


def patch_name(patch: Any) -> str:
    """``module.qualname`` of a patch function or object, for messages."""
    target = patch if hasattr(patch, "__qualname__") else type(patch)
    return f"{getattr(target, '__module__', '?')}.{target.__qualname__}"


def check_no_foreign_patches(transformer_options: dict) -> None:
    """ValueError unless DreamO's tokens and ids reach the blocks as DreamO sets them: no other ``post_input``
    patch (core's Flux KV Cache drops reference tokens, USO Style Reference lengthens the text, each would make
    our embedding or strength bias land on the wrong tokens) and no ``rope_options`` (ScaleROPE: DreamO replaces
    the image ids with its own, so a RoPE scale or shift would be silently lost)."""
    others = transformer_options.get("patches", {}).get("post_input", [])
    if others:
        raise ValueError(
            f"{WHERE}: another node added a post_input patch to this model ({', '.join(patch_name(p) for p in others)}); "
            "DreamO changes the image tokens there and cannot be combined with it (e.g. Flux KV Cache drops the "
            "reference tokens, Apply USO Style Reference adds text tokens). Remove that node, or apply it to a model "
            "without DreamO")
    if transformer_options.get("rope_options"):
        raise ValueError(
            f"{WHERE}: the model has RoPE options {transformer_options['rope_options']} (ScaleROPE or a model that "
            "sets them); DreamO sets its own position ids for the image and reference tokens, so they would be "
            "ignored. Remove ScaleROPE from this model")


def with_post_input(transformer_options: dict, patch: Callable) -> dict:
    """A copy of transformer_options whose ``patches["post_input"]`` list starts with ``patch``."""
    patches = dict(transformer_options.get("patches", {}))
    patches["post_input"] = [patch, *patches.get("post_input", [])]
    return {**transformer_options, "patches": patches}


class DreamOEmbeddingPatch:
    """One-shot post_input patch. emb: (B, L, D) in the tables' dtype; target/ref grids give the ids."""

    def __init__(self, emb: torch.Tensor, target: TokenGrid, refs: Sequence[TokenGrid],
                 boxes: Sequence[Box | None] = ()):
        self.emb = emb
        self.target = target
        self.refs = list(refs)
        self.boxes = list(boxes) or [None] * len(self.refs)

    def __call__(self, kwargs: dict) -> dict:
        img, img_ids = kwargs["img"], kwargs["img_ids"]  # (B, L, D), (B, L, 3)
        if img.shape[1] != self.emb.shape[1] or img_ids.shape[1] != self.emb.shape[1]:
            raise ValueError(
                f"{WHERE}: the model saw {img.shape[1]} image tokens, but the DreamO embedding covers "
                f"{self.emb.shape[1]} (target {self.target} + references {self.refs}); another node changed the tokens"
            )
        # rounded through the compute dtype as the official pipeline (bf16 ids above 256 are even), then kept in
        # the ids dtype of this ComfyUI (the compute dtype up to 0.3.71, float32 from 0.3.72 on)
        ids = dreamo_position_ids(self.target, self.refs, dtype=img.dtype).to(img_ids)
        if any(b is not None for b in self.boxes):
            ids = ids.clone()
            start = self.target[0] * self.target[1]
            for grid, box in zip(self.refs, self.boxes):
                n = grid[0] * grid[1]
                if box is not None:
                    ids[start : start + n] = placed_reference_ids(grid, box, self.target).to(img.dtype).to(ids)
                start += n
        return {**kwargs, "img": img + self.emb.to(device=img.device, dtype=img.dtype),
                "img_ids": ids.expand(img_ids.shape[0], -1, -1)}


class DreamOWrapper:
    """DIFFUSION_MODEL wrapper ``(executor, *args, **kwargs)``. Holds the tables and the reference layout
    (indices, token grids) Apply DreamO Conditioning put into the positive conditioning."""

    def __init__(self, tables: ConditionEmbeddings, indices: Sequence[int], grids: Sequence[TokenGrid],
                 controls: Sequence[ReferenceControl] = (), boxes: Sequence[Box | None] = (),
                 recorder: RoutingRecorder | None = None):
        self.tables = tables
        self.recorder = recorder
        self.indices = list(indices)
        self.grids = [tuple(g) for g in grids]
        self.controls = list(controls) or [ReferenceControl()] * len(self.indices)
        self.boxes = list(boxes) or [None] * len(self.indices)

    def to(self, device_or_dtype: Any) -> DreamOWrapper:
        """Model casts (fp8 arrives as float8_e4m3fn) do not touch the tables: they are cast at use time."""
        return self

    def __call__(self, executor: Any, *args: Any, **kwargs: Any) -> Any:
        x = get_argument(executor, args, kwargs, "x")  # (B, C, H, W)
        options = get_argument(executor, args, kwargs, "transformer_options") or {}
        ref_latents = get_argument(executor, args, kwargs, "ref_latents")
        cond_items = cond_item_mask(options.get("cond_or_uncond"), x.shape[0])
        if not bool(cond_items.any()):
            return executor(*args, **kwargs)  # negative pass: no references, no embedding
        check_no_foreign_patches(options)
        ref_grids = self.check_references(ref_latents, kwargs.get("ref_latents_method"))
        target = token_grid(tuple(x.shape[-2:]))
        emb = batched_condition_embeddings(self.tables, target[0] * target[1], [r * c for r, c in ref_grids],
                                           self.indices, cond_items)
        patch = DreamOEmbeddingPatch(emb, target, ref_grids, self.boxes)
        call_options = with_post_input(options, patch)
        run = options.get(RUN_KEY)
        if self.recorder is not None and run is not None and self.recorder.active(current_sigma(options)):
            call_options = self.with_recorder_override(call_options, run, executor, args, kwargs, target, ref_grids)
        args, kwargs = with_argument(executor, args, kwargs, "transformer_options", call_options)
        weights = [c.strength_at(current_sigma(options)) for c in self.controls]
        if not is_neutral(weights):  # strength 1 everywhere: no mask, the call stays bit-identical
            context = get_argument(executor, args, kwargs, "context")  # (B, T, C)
            bias = strength_bias(weights, context.shape[1], target[0] * target[1], [r * c for r, c in ref_grids],
                                 x.shape[0], x.dtype, x.device)
            kwargs = {**kwargs, "attention_mask": merged_mask(kwargs.get("attention_mask"), bias)}
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
