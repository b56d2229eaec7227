"""Checks of one sampling run as a whole: what no single node can see (which model and which conditioning meet at
the sampler). An ``OUTER_SAMPLE`` wrapper (installed by Load DreamO LoRA, ``dreamo_model``) runs once per sampling
run with the run's own guider (its conds, cfg and model options), before the model loads, so a warning is logged
exactly once per run and nothing is stored between runs or shared between model clones.

- DreamO references in the guider's NEGATIVE conditioning while the negative pass runs: refused (the official
  negative pass has no references; it is Apply's output wired to the negative input by mistake).
- A DreamO model sampled with no DreamO layout in any conditioning: a warning (the DreamO LoRA then runs without
  its condition embedding).

Not detectable here: Apply's conditioning sampled with a model that never went through Load DreamO LoRA (no DreamO
code runs on such a model; see docs/nodes.md).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..node_names import APPLY_CONDITIONING, LOAD_LORA
from .conditioning_layout import layout_of
from .model_info import attached_embeddings
from .sampling_run import guider_conds

log = logging.getLogger("DreamO")
APPLY = APPLY_CONDITIONING
LOAD = LOAD_LORA


def dreamo_reference_count(conds: list | None) -> int:
    """Largest number of DreamO references of any item of one of the guider's cond lists."""
    return max((len(layout_of(c) or ()) for c in conds or []), default=0)


def negative_pass_runs(guider: Any, model_options: dict) -> bool | None:
    """Whether the sampler runs the negative prompt: cfg != 1 (DualCFG: its cfg2, or its nested style), or
    ComfyUI's cfg-1 skip disabled; None when the guider has no cfg we know."""
    if model_options.get("disable_cfg1_optimization", False) or getattr(guider, "nested", False):
        return True
    cfg = getattr(guider, "cfg2", getattr(guider, "cfg", None))  # DualCFG: cfg2 weighs cond2 against the negative
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)):
        return None
    return not math.isclose(float(cfg), 1.0)


def run_problems(guider: Any) -> list[str]:
    """Warnings for this sampling run (empty when all is as DreamO needs); ValueError where the result cannot be
    right. ``guider``: ComfyUI's guider of the run (``CFGGuider`` and subclasses: conds, cfg, model_options)."""
    patcher = getattr(guider, "model_patcher", None)
    conds = guider_conds(guider)
    tables = attached_embeddings(patcher) if patcher is not None else None
    if tables is None or not conds:
        return []
    options = getattr(guider, "model_options", None) or patcher.model_options
    negative = dreamo_reference_count(conds.get("negative"))
    if negative and negative_pass_runs(guider, options):
        cfg = getattr(guider, "cfg2", getattr(guider, "cfg", "?"))
        raise ValueError(
            f"{APPLY}: the sampler's NEGATIVE conditioning carries {negative} DreamO reference(s) (the CONDITIONING "
            f"output of {APPLY} reached the negative input) and cfg is {cfg}: the negative pass would run the "
            "references, which the official pipeline never does. Connect the plain negative prompt to the sampler's "
            "negative input (or use cfg 1, as DreamO's cfg-distilled LoRAs expect)")
    if any(layout_of(c) is not None for items in conds.values() for c in items):
        return []
    return [f"{LOAD}: this model carries DreamO's LoRA/embedding tables but is sampled without {APPLY}, so no "
            "DreamO condition embedding is added and the result is not DreamO's (not even without references). "
            f"Put {APPLY} on the sampler's positive prompt (references are optional)"]


def dreamo_run_check(executor: Any, *args: Any, **kwargs: Any) -> Any:
    """``OUTER_SAMPLE`` wrapper: check the run (``executor.class_obj`` is its guider), log each warning once, then
    sample unchanged."""
    for message in run_problems(getattr(executor, "class_obj", None)):
        log.warning(message)
    return executor(*args, **kwargs)
