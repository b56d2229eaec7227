"""What makes a ComfyUI model a DreamO model: Load DreamO LoRA attaches the tables (``model_info``) and installs
four wrappers under the key ``dreamo``, on a clone it owns. None holds state: what each prompt asks for rides in
its conditioning (``conditioning_layout``), so any DreamO model samples any DreamO conditioning, whatever the order
of the nodes between them.

- ``OUTER_SAMPLE``: the check of the run as a whole, before the model loads (``run_checks``);
- ``SAMPLER_SAMPLE``: the run's layouts by uuid, resolved against this model (``sampling_run``);
- ``APPLY_MODEL``: each model call's items' layouts, by the uuids ComfyUI lists for the call (``sampling_run``);
- ``DIFFUSION_MODEL``: DreamO for each batch item that carries a layout (``wrapper``).
"""

from __future__ import annotations

from typing import Any

import comfy.patcher_extension

from .model_info import WRAPPER_KEY
from .run_checks import dreamo_run_check
from .sampling_run import dreamo_call_wrapper, dreamo_run_wrapper
from .wrapper import dreamo_forward_wrapper


def add_dreamo_wrappers(model: Any) -> None:
    """Install DreamO's wrappers on ``model`` (a clone the caller owns), replacing earlier ones (idempotent)."""
    kinds = comfy.patcher_extension.WrappersMP
    for kind, wrapper in ((kinds.OUTER_SAMPLE, dreamo_run_check), (kinds.SAMPLER_SAMPLE, dreamo_run_wrapper),
                          (kinds.APPLY_MODEL, dreamo_call_wrapper), (kinds.DIFFUSION_MODEL, dreamo_forward_wrapper)):
        model.remove_wrappers_with_key(kind, WRAPPER_KEY)
        model.add_wrapper_with_key(kind, WRAPPER_KEY, wrapper)


def has_dreamo_wrappers(model: Any) -> bool:
    """True when ``model`` went through Load DreamO LoRA (its DIFFUSION_MODEL wrapper is there)."""
    kind = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
    return bool(model.get_wrappers(kind, WRAPPER_KEY))
