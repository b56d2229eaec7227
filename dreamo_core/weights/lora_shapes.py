"""Does a LoRA module fit its target weight? Shape maths on LoRA state dicts in ComfyUI's key layout
(``<module>.lora_up.weight`` / ``.lora_down.weight``, or ``.lora_B`` / ``.lora_A``, optional ``.lora_mid``).

ComfyUI computes ``up.flatten(1) @ down.flatten(1)`` and reshapes it to the target weight; a module whose product
does not fit is only logged at patch time and silently skipped, so loaders check here first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

Shape = tuple[int, ...]
UP_DOWN_SUFFIXES = ((".lora_up.weight", ".lora_down.weight"), (".lora_B.weight", ".lora_A.weight"),
                    (".lora_B.default.weight", ".lora_A.default.weight"))
MID_SUFFIX = ".lora_mid.weight"


def lora_pair(sd: Mapping[str, torch.Tensor], module: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(up (out, rank), down (rank, in, ...)) of ``module``, or None when it has no up/down pair."""
    for up, down in UP_DOWN_SUFFIXES:
        if module + up in sd and module + down in sd:
            return sd[module + up], sd[module + down]
    return None


def lora_delta_shape(sd: Mapping[str, torch.Tensor], module: str) -> Shape | None:
    """Shape of the weight delta of ``module``: (out, *down.shape[1:]) for up (out, r) @ down (r, in, ...), or
    (out, in, kh, kw) with a LoCon ``lora_mid`` (r, r, kh, kw). None when the module has no up/down pair."""
    pair = lora_pair(sd, module)
    if pair is None:
        return None
    up, down = pair
    mid = sd.get(module + MID_SUFFIX)
    if mid is not None and mid.ndim == 4:
        return (int(up.shape[0]), int(down.shape[1]), int(mid.shape[2]), int(mid.shape[3]))
    return (int(up.shape[0]), *(int(s) for s in down.shape[1:]))


def sliced_shape(shape: Sequence[int], offset: Sequence[int] | None) -> Shape:
    """``shape`` of a weight, narrowed to ``offset`` = (dim, start, length) when the LoRA targets a slice (e.g. the
    q/k/v rows of a fused qkv weight)."""
    out = [int(s) for s in shape]
    if offset is not None:
        dim, _, length = (int(v) for v in offset)
        out[dim] = length
    return tuple(out)


def delta_fits(delta: Sequence[int], target: Sequence[int]) -> bool:
    """True when ComfyUI's ``(up @ down).reshape(target)`` gives the intended delta: the same output rows and the
    same number of elements (a 2-D delta on a 1x1 conv weight fits; a transposed one does not)."""
    return bool(delta) and bool(target) and delta[0] == target[0] and math.prod(delta) == math.prod(target)


def lora_shape_mismatches(sd: Mapping[str, torch.Tensor], targets: Mapping[str, Shape | None]
                          ) -> list[tuple[str, Shape, Shape]]:
    """[(module, delta shape, target shape)] for every module of ``targets`` (module -> the logical shape of the
    weight, or slice of it, that it patches) whose delta does not fit. A target of None (shape unknown, e.g. a
    quantized weight without its logical shape) and a module without an up/down pair are not judged."""
    out = []
    for module, target in targets.items():
        delta = lora_delta_shape(sd, module)
        if target is not None and delta is not None and not delta_fits(delta, target):
            out.append((module, delta, tuple(target)))
    return out
