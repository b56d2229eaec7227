"""Checks of one sampling run as a whole: what no single node can see (which model and which conditioning meet at
the sampler). An ``OUTER_SAMPLE`` wrapper, added by Load DreamO LoRA and Apply DreamO Conditioning, runs once per
sampling run with the run's own guider (its conds, cfg and model options), so a warning is logged exactly once
per run and nothing is stored between runs or shared between model clones.

- DreamO references in the NEGATIVE conditioning with cfg != 1: refused (the official negative pass has no
  references; they would run without DreamO's embeddings). The DIFFUSION_MODEL wrapper refuses the same for
  guiders this check cannot read (``check_no_negative_references``).
- A model with DreamO's tables (Load DreamO LoRA) but without Apply DreamO Conditioning: refused when the positive
  carries DreamO references (they would reach FLUX without DreamO's embeddings), a warning otherwise.

Not detectable here: Apply's conditioning sampled with a model that never went through Load DreamO LoRA (no DreamO
code runs on such a model; see docs/nodes.md).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import comfy.patcher_extension

from ..node_names import APPLY_CONDITIONING, LOAD_LORA
from .model_info import EMBEDDINGS_ATTACHMENT, WRAPPER_KEY

log = logging.getLogger("DreamO")
APPLY = APPLY_CONDITIONING
LOAD = LOAD_LORA
REFS_KEY = "dreamo_references"  # set by Apply DreamO Conditioning on every conditioning entry it returns


def dreamo_reference_count(conds: list | None) -> int:
    """Largest number of DreamO references Apply put into any entry of one of the guider's cond lists."""
    return max((int(c.get(REFS_KEY) or 0) for c in conds or [] if isinstance(c, dict)), default=0)


def negative_pass_runs(guider: Any, model_options: dict) -> bool | None:
    """Whether the sampler runs the negative prompt (cfg != 1, or ComfyUI's cfg-1 skip disabled); None when the
    guider has no single ``cfg`` (e.g. a dual-CFG guider)."""
    cfg = getattr(guider, "cfg", None)
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)):
        return None
    return not math.isclose(float(cfg), 1.0) or bool(model_options.get("disable_cfg1_optimization", False))


def run_problems(guider: Any) -> list[str]:
    """Warnings for this sampling run (empty when all is as DreamO needs); ValueError where the result cannot be
    right. ``guider``: ComfyUI's guider of the run (``CFGGuider`` and subclasses: conds, cfg, model_options)."""
    patcher = getattr(guider, "model_patcher", None)
    conds = getattr(guider, "conds", None)
    if patcher is None or not isinstance(conds, dict) or patcher.get_attachment(EMBEDDINGS_ATTACHMENT) is None:
        return []
    options = getattr(guider, "model_options", None) or patcher.model_options
    kind = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
    applied = bool(comfy.patcher_extension.get_wrappers_with_key(kind, WRAPPER_KEY, options, is_model_options=True))
    negative = dreamo_reference_count(conds.get("negative"))
    if negative and negative_pass_runs(guider, options):
        raise ValueError(
            f"{APPLY}: the sampler's NEGATIVE conditioning carries {negative} DreamO reference(s) (the CONDITIONING "
            f"output of {APPLY} reached the negative input) and cfg is {guider.cfg}: the negative pass would run the "
            "references without DreamO's embeddings, which the official pipeline never does. Connect the plain "
            "negative prompt to the sampler's negative input (or use cfg 1, as DreamO's cfg-distilled LoRAs expect)")
    if applied:
        return []
    positive = dreamo_reference_count(conds.get("positive"))
    if positive:
        raise ValueError(
            f"{APPLY}: the sampler's positive carries {positive} DreamO reference(s), but the model reaching the "
            f"sampler did not come out of {APPLY} (it has DreamO's tables from {LOAD} but no DreamO wrapper), so the "
            f"references would reach FLUX without DreamO's embeddings. Connect the model output of {APPLY} to the "
            "sampler")
    return [f"{LOAD}: this model carries DreamO's LoRA/embedding tables but is sampled without {APPLY}, so no "
            "DreamO condition embedding is added and the result is not DreamO's (not even without references). "
            f"Put {APPLY} between {LOAD} and the sampler (references are optional)"]


def dreamo_run_check(executor: Any, *args: Any, **kwargs: Any) -> Any:
    """``OUTER_SAMPLE`` wrapper: check the run (``executor.class_obj`` is its guider), log each warning once, then
    sample unchanged."""
    for message in run_problems(getattr(executor, "class_obj", None)):
        log.warning(message)
    return executor(*args, **kwargs)


def add_run_check(model: Any) -> None:
    """Install ``dreamo_run_check`` on ``model`` (a clone the caller owns), replacing an earlier one."""
    kind = comfy.patcher_extension.WrappersMP.OUTER_SAMPLE
    model.remove_wrappers_with_key(kind, WRAPPER_KEY)
    model.add_wrapper_with_key(kind, WRAPPER_KEY, dreamo_run_check)
