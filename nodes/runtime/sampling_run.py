"""One sampling run of a DreamO model: each conditioning item's layout, found per model call by its uuid.

A ``SAMPLER_SAMPLE`` wrapper (installed by Load DreamO LoRA) sees the run's guider: its conds (every list the
guider has: CFG's positive / negative, DualCFG's three, any custom guider's), each with the ``uuid`` ComfyUI gave
it, and the model that samples. It resolves every item's DreamO layout against THAT model (percents -> sigmas of
its ``model_sampling``; the tables Load DreamO LoRA attached to it) into a ``DreamORun`` and passes it down in this
run's own copy of ``transformer_options``. Per model call ComfyUI lists the uuid of each batch chunk
(``transformer_options["uuids"]``): the DIFFUSION_MODEL wrapper reads each item's own layout from the run. An item
without a layout (a negative prompt, a plain prompt) gets no DreamO, whatever number ComfyUI's ``cond_or_uncond``
gives it. Nothing is stored on the model; clones and concurrent runs never share a run.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

from ...dreamo_core.conditioning.embeddings import ConditionEmbeddings, batched_condition_embeddings
from ...dreamo_core.conditioning.position_ids import reference_position_ids
from ...dreamo_core.conditioning.token_layout import TokenGrid
from ..node_names import APPLY_CONDITIONING
from .conditioning_layout import ItemLayout, layout_of, resolved_layout
from .flux_arguments import get_argument, method_argument_position, with_argument
from .model_info import attached_embeddings
from .tensor_memo import TensorMemo

WHERE = APPLY_CONDITIONING
RUN_KEY = "dreamo_run"  # transformer_options key of the run's DreamORun
ITEMS_KEY = "dreamo_items"  # transformer_options key of one model call's per-item layouts (dreamo_call_wrapper)


class DreamORun:
    """The sampling model's tables and every conditioning item's ``ItemLayout`` by uuid, for one run; a memo of
    tensors that are pure functions of their key for these tables (tables per device, embedding and ids per
    batch layout), so later steps reuse them."""

    def __init__(self, tables: ConditionEmbeddings, layouts: dict[Hashable, ItemLayout]):
        self.tables, self.layouts = tables, layouts
        self.memo = TensorMemo()

    def to(self, device_or_dtype: Any) -> DreamORun:
        return self  # never cast with the model (fp8 arrives as float8_e4m3fn); tables move per device on use

    def item_layouts(self, uuids: Sequence[Hashable] | None, batch: int) -> tuple[ItemLayout | None, ...]:
        """(batch,) each item's layout (None: no DreamO). Each uuid covers ``batch // len(uuids)`` consecutive
        items (one cond's chunk, as ComfyUI concatenates them)."""
        if not uuids:
            return (None,) * batch
        if batch % len(uuids):
            raise ValueError(f"{WHERE}: a batch of {batch} items cannot be split into {len(uuids)} conditionings")
        return tuple(self.layouts.get(u) for u in uuids for _ in range(batch // len(uuids)))

    def tables_on(self, device: torch.device) -> ConditionEmbeddings:
        return self.memo.get(("tables", device), lambda: self.tables.to(device=device))

    def embedding(self, device: torch.device, target: TokenGrid, ref_grids: Sequence[TokenGrid],
                  items: Sequence[ItemLayout | None]) -> torch.Tensor:
        """(B, L, D) condition embedding on ``device``: each item's own indices, zeros for items without DreamO."""
        indices = tuple(None if i is None else i.indices for i in items)

        def build() -> torch.Tensor:
            return batched_condition_embeddings(self.tables_on(device), target[0] * target[1],
                                                [r * c for r, c in ref_grids], indices)
        return self.memo.get(("embedding", device, target, tuple(ref_grids), indices), build)

    def position_ids(self, target: TokenGrid, ref_grids: Sequence[TokenGrid],
                     items: Sequence[ItemLayout | None]) -> Callable[[torch.dtype, torch.device], torch.Tensor]:
        """``ids(dtype, device)``: (L, 3) ids of ``[target | refs]`` when every item places its references alike,
        else (B, L, 3), each item with its own boxes; rounded through ``dtype``."""
        unplaced = (None,) * len(ref_grids)
        boxes = tuple(unplaced if i is None else i.boxes for i in items)
        distinct = tuple(dict.fromkeys(boxes))

        def ids(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
            def build() -> torch.Tensor:
                per_box = {b: reference_position_ids(target, ref_grids, b, dtype, device) for b in distinct}
                return per_box[distinct[0]] if len(distinct) == 1 else torch.stack([per_box[b] for b in boxes])
            return self.memo.get(("ids", device, dtype, target, tuple(ref_grids), boxes), build)
        return ids


def guider_conds(guider: Any) -> dict[str, list]:
    """The guider's cond lists by name (``positive``, ``negative``, DualCFG's ``middle``, ...); {} if none."""
    conds = getattr(guider, "conds", None)
    return {k: v for k, v in conds.items() if isinstance(v, list)} if isinstance(conds, dict) else {}


def sampling_run(guider: Any) -> DreamORun | None:
    """The DreamORun of the guider's conds for the model it samples with; None when no item carries a layout or
    the model has no DreamO tables (the run check refuses that case before the model loads)."""
    patcher = getattr(guider, "model_patcher", None)
    tables = attached_embeddings(patcher) if patcher is not None else None
    items = [c for conds in guider_conds(guider).values() for c in conds if layout_of(c) is not None]
    if tables is None or not items:
        return None
    percent_to_sigma = patcher.get_model_object("model_sampling").percent_to_sigma
    return DreamORun(tables, {c["uuid"]: resolved_layout(layout_of(c), percent_to_sigma) for c in items if "uuid" in c})


def with_transformer_option(executor: Any, args: tuple, kwargs: dict, key: str, value: Any, where: str) -> tuple:
    """(args, kwargs) of a ``SAMPLER_SAMPLE`` call whose ``extra_args`` carry ``value`` under ``key`` in a copy
    of their model_options' transformer_options (this run only). ``extra_args`` is found by name in the
    sampler's ``sample`` signature."""
    def added(extra_args: dict) -> dict:
        options = extra_args.get("model_options", {})
        transformer_options = {**options.get("transformer_options", {}), key: value}
        return {**extra_args, "model_options": {**options, "transformer_options": transformer_options}}

    if "extra_args" in kwargs:
        return args, {**kwargs, "extra_args": added(kwargs["extra_args"])}
    pos = sampler_argument_position(executor, "extra_args", where)
    if pos >= len(args):
        raise RuntimeError(f"{where}: the sampler was called without extra_args")
    return args[:pos] + (added(args[pos]),) + args[pos + 1 :], kwargs


def sampler_argument_position(executor: Any, name: str, where: str) -> int:
    """Position of ``name`` in the wrapped sampler's ``sample`` (``model_wrap, sigmas, extra_args, ...``)."""
    sample = getattr(type(getattr(executor, "class_obj", None)), "sample", None)
    return method_argument_position(sample, name, where)


def sampler_guider(executor: Any, args: tuple, kwargs: dict) -> Any:
    """The guider a ``SAMPLER_SAMPLE`` call samples (the sampler's ``model_wrap``)."""
    if "model_wrap" in kwargs:
        return kwargs["model_wrap"]
    pos = sampler_argument_position(executor, "model_wrap", WHERE)
    return args[pos] if pos < len(args) else None


def dreamo_run_wrapper(executor: Any, *args: Any, **kwargs: Any) -> Any:
    """``SAMPLER_SAMPLE`` wrapper: sample with this run's DreamORun in its transformer_options (unchanged when no
    conditioning item carries a DreamO layout)."""
    run = sampling_run(sampler_guider(executor, args, kwargs))
    if run is not None:
        args, kwargs = with_transformer_option(executor, args, kwargs, RUN_KEY, run, WHERE)
    return executor(*args, **kwargs)


def dreamo_call_wrapper(executor: Any, *args: Any, **kwargs: Any) -> Any:
    """``APPLY_MODEL`` wrapper: this model call's per-item layouts (``DreamORun.item_layouts`` of the call's
    uuids) into a copy of its transformer_options, for the DIFFUSION_MODEL wrapper. It runs outside the diffusion
    model, so under torch.compile (core's TorchCompileModel compiles the diffusion model) the uuids, new in every
    run, are never guarded on: the compiled model sees only the layouts, plain values equal from run to run."""
    options = get_argument(executor, args, kwargs, "transformer_options", "_apply_model") or {}
    run = options.get(RUN_KEY)
    if run is not None:
        x = get_argument(executor, args, kwargs, "x", "_apply_model")  # (B, C, H, W)
        items = run.item_layouts(options.get("uuids"), x.shape[0])
        args, kwargs = with_argument(executor, args, kwargs, "transformer_options", {**options, ITEMS_KEY: items},
                                     "_apply_model")
    return executor(*args, **kwargs)
