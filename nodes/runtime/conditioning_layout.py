"""The DreamO layout each conditioning item carries, and what it becomes for one sampling run.

Apply DreamO Conditioning puts its references (a ``DreamORefs``: DreamO indices, token grids, strengths, step
ranges as PERCENTS, boxes) under ``LAYOUT_KEY`` into every item of the positive it returns, next to the
reference latents ComfyUI's Flux concatenates. Nothing about them is stored on the model. ComfyUI copies the
item's dict into the sampler's cond (``sampler_helpers.convert_cond``, which gives it a ``uuid``), through
ConditioningCombine / SetArea / SetMask / SetTimestepRange and any guider. Per sampling run each layout is
resolved against the model that samples: its percents become sigmas of that model's ``model_sampling``
(``ItemLayout``); the item is then found per model call by its uuid (``sampling_run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...dreamo_core.conditioning.placement import Box
from ...dreamo_core.conditioning.reference_strength import ReferenceControl
from ...dreamo_core.conditioning.token_layout import TokenGrid
from .references import DreamORefs

LAYOUT_KEY = "dreamo_layout"  # a conditioning item's DreamO layout (a DreamORefs), set by Apply DreamO Conditioning


def layout_of(item: object) -> DreamORefs | None:
    """The DreamO layout of one conditioning item's dict (ComfyUI's ``[tensor, dict]`` pair's dict, or the sampler's
    converted cond), None when it has none."""
    layout = item.get(LAYOUT_KEY) if isinstance(item, dict) else None
    return layout if isinstance(layout, DreamORefs) else None


@dataclass(frozen=True)
class ItemLayout:
    """One item's DreamO references for one sampling run: DreamO indices, token grids, strength controls (their
    step range in sigmas of the sampling model) and boxes, in reference order. Plain Python values: hashable
    (memo keys) and constant for Dynamo."""

    indices: tuple[int, ...]
    grids: tuple[TokenGrid, ...]
    controls: tuple[ReferenceControl, ...]
    boxes: tuple[Box | None, ...]

    @property
    def needs_bias(self) -> bool:
        """False when every reference has strength 1 over the whole schedule (no mask: plain DreamO, bit for bit)."""
        return not all(c.is_neutral for c in self.controls)


def resolved_layout(refs: DreamORefs, percent_to_sigma: Callable[[float], float]) -> ItemLayout:
    """``refs`` for a run of the model whose ``model_sampling.percent_to_sigma`` is given (as core's own
    timestep-range conds and Skip Layer Guidance do)."""
    controls = tuple(ReferenceControl(r.strength, float(percent_to_sigma(r.start_percent)),
                                      float(percent_to_sigma(r.end_percent))) for r in refs.refs)
    return ItemLayout(tuple(refs.indices), tuple(r.grid for r in refs.refs), controls, tuple(r.box for r in refs.refs))
