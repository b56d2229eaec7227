"""Finding arguments of ComfyUI's Flux ``_forward``, BaseModel ``_apply_model`` (and other wrapped methods) by
NAME, from their signatures.

``DIFFUSION_MODEL`` wrappers receive ``_forward``'s positional tuple (``x, timestep, context, y, guidance,
ref_latents, control, transformer_options`` in 0.3.64..0.33); a renamed parameter is a clear error, never a guess.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..node_names import APPLY_CONDITIONING

WHERE = APPLY_CONDITIONING


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


def argument_position(executor: Any, name: str, method: str = "_forward") -> int:
    """Position of ``name`` among the positional parameters of the wrapped ``method`` of ``executor.class_obj``:
    Flux ``_forward`` (``x, timestep, context, y, guidance, ref_latents, control, transformer_options`` in
    0.3.64..0.33) for DIFFUSION_MODEL wrappers, BaseModel ``_apply_model`` (``x, t, c_concat, c_crossattn,
    control, transformer_options``) for APPLY_MODEL wrappers."""
    wrapped = getattr(type(getattr(executor, "class_obj", None)), method, None)
    if wrapped is None:
        raise RuntimeError(f"{WHERE}: the wrapped model {type(getattr(executor, 'class_obj', None)).__name__} has no "
                           f"{method}; DreamO runs only on ComfyUI's own FLUX model")
    return method_argument_position(wrapped, name, WHERE)


def get_argument(executor: Any, args: tuple, kwargs: dict, name: str, method: str = "_forward") -> Any:
    if name in kwargs:
        return kwargs[name]
    pos = argument_position(executor, name, method)
    return args[pos] if pos < len(args) else None


def with_argument(executor: Any, args: tuple, kwargs: dict, name: str, value: Any,
                  method: str = "_forward") -> tuple[tuple, dict]:
    """(args, kwargs) with ``name`` replaced by ``value`` (new containers; the inputs are not changed)."""
    pos = argument_position(executor, name, method)
    if name not in kwargs and pos < len(args):
        args = args[:pos] + (value,) + args[pos + 1 :]
    else:
        kwargs = {**kwargs, name: value}
    return args, kwargs
