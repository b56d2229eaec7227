"""The guard a DreamO conditioning carries: a clear error when a model WITHOUT DreamO samples it.

No DreamO code runs on a model that never went through Load DreamO LoRA (a refiner after SplitSigmas,
ModelMergeSimple with the plain model first), so only the conditioning can notice. ComfyUI's conditioning hooks
(``comfy.hooks``) are the one way it offers: before every sampling run it asks each hook of the conds whether to
register on the model that samples (``should_register``). Ours answers no on a DreamO model (ComfyUI then drops
it from the conds: batching, caching and the output stay exactly as without it, ``bench/bench_cond_hooks.py``)
and refuses any other model with an error naming Apply DreamO Conditioning.

Left off where ComfyUI's dynamic VRAM is on (0.16+ with comfy-aimdo, the default on NVIDIA): there
``CFGGuider.set_conds`` swaps a dynamic model for a non-dynamic copy, re-read through the model's loader, as soon
as ANY cond carries hooks, before any hook is asked (measured by ``bench/bench_cond_hooks.py``). A second copy
of FLUX in memory on every DreamO run is too high a price for a check, so on such installs the gap stays (see
docs/nodes.md).
"""

from __future__ import annotations

from typing import Any

import comfy.hooks

from ..node_names import APPLY_CONDITIONING, LOAD_LORA
from .dreamo_model import has_dreamo_wrappers

WHERE = APPLY_CONDITIONING


def refuse_models_without_dreamo(hook: Any, model: Any, *_: Any) -> bool:
    """``custom_should_register`` of the guard: False (not registered, dropped from the conds) on a DreamO model;
    ValueError on any other model that samples the conditioning."""
    if has_dreamo_wrappers(model):
        return False
    raise ValueError(
        f"{WHERE}: positive: a conditioning carrying DreamO references reaches a sampler whose model did not go "
        f"through {LOAD_LORA} (e.g. a refiner stage after SplitSigmas, or ModelMergeSimple with the plain model "
        "first): its references would run as plain FLUX reference latents, without DreamO's LoRA and embedding. "
        f"Sample it with a model from {LOAD_LORA} (put the DreamO model first in ModelMergeSimple), or give that "
        "stage the prompt from before Apply DreamO Conditioning")


def dreamo_guard_hooks() -> comfy.hooks.HookGroup:
    """A hook group holding the guard (a TransformerOptionsHook that adds nothing)."""
    hook = comfy.hooks.TransformerOptionsHook({}, comfy.hooks.EnumHookScope.HookedOnly)
    hook.custom_should_register = refuse_models_without_dreamo
    group = comfy.hooks.HookGroup()
    group.add(hook)
    return group


def dynamic_vram(model: Any) -> bool:
    """Whether ComfyUI's dynamic VRAM is on (any cond hook would make it reload the model; ComfyUI >= 0.16)."""
    import comfy.model_patcher

    dynamic = getattr(model, "is_dynamic", None)
    if callable(dynamic) and dynamic():
        return True
    memory = getattr(comfy, "memory_management", None)
    core = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)  # 0.16+: may be dynamic
    return bool(getattr(memory, "aimdo_enabled", False)) or core is not comfy.model_patcher.ModelPatcher


def guarded(conditioning: list, model: Any) -> list:
    """``conditioning`` with the guard added to each item's hooks (kept with any hooks it had), unless dynamic VRAM
    is on (then unchanged)."""
    if dynamic_vram(model):
        return conditioning
    return comfy.hooks.set_hooks_for_conditioning(conditioning, dreamo_guard_hooks())
