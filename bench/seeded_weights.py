"""Seeded random weights made on the device, tensor by tensor: no weights file, and the same values wherever the
same (name, shape) is built, whatever library version built the module.

Each tensor has its own generator on the target device, seeded from the run's seed and the tensor's name, so a
diffusers ``FluxTransformer2DModel`` of diffusers 0.33 (the official code's) and of the current diffusers get
identical weights, and ComfyUI's FLUX gets them too after its own key conversion. The distribution is the one
PyTorch's default init gives (a ``Linear``'s weight and bias uniform in ±1/√fan_in; norm scales 1, shifts 0), so
activations keep a sane scale through all 57 FLUX.1-dev blocks. Values differ between CPU and CUDA (their
generators differ); every variant of one run builds on the same device.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import torch
from torch import nn


def tensor_seed(seed: int, name: str) -> int:
    """The generator seed of the tensor ``name`` in a run seeded ``seed`` (32 bits: the CPU generator keeps no more)."""
    return zlib.crc32(f"{seed}/{name}".encode())


def seeded_tensors(module: nn.Module, seed: int, device: torch.device | str, dtype: torch.dtype
                   ) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor on ``device`` in ``dtype``) for every parameter of ``module`` (built on any device, e.g. the
    meta device: only names, shapes and module types are read)."""
    for prefix, sub in module.named_modules():
        params = list(sub.named_parameters(recurse=False))
        weight = getattr(sub, "weight", None)
        bound = weight.shape[1] ** -0.5 if isinstance(weight, torch.Tensor) and weight.ndim == 2 else None
        for short, p in params:
            name = f"{prefix}.{short}" if prefix else short
            if "Norm" in type(sub).__name__:  # as a norm's reset_parameters: scale 1, shift 0
                yield name, (torch.ones if short == "weight" else torch.zeros)(p.shape, device=device, dtype=dtype)
                continue
            g = torch.Generator(device=device).manual_seed(tensor_seed(seed, name))
            if bound is None:
                values = torch.randn(p.shape, generator=g, device=device) * 0.02
            else:
                values = (torch.rand(p.shape, generator=g, device=device) * 2 - 1) * bound
            yield name, values.to(dtype)


def seeded_state_dict(module: nn.Module, seed: int, device: torch.device | str, dtype: torch.dtype
                      ) -> dict[str, torch.Tensor]:
    """``seeded_tensors`` as a state dict (for a converter, e.g. ComfyUI's ``convert_diffusers_mmdit``)."""
    return dict(seeded_tensors(module, seed, device, dtype))


def materialize_seeded(module: nn.Module, seed: int, device: torch.device | str, dtype: torch.dtype) -> nn.Module:
    """``module`` (built on the meta device) allocated on ``device`` in ``dtype`` and filled with
    ``seeded_tensors``, one tensor at a time (peak memory: the model + one tensor). Eval mode, no grad."""
    if any(True for _ in module.buffers()):
        raise ValueError("materialize_seeded: the module has buffers, which seeded_tensors does not fill")
    module = nn.Module.to(module, dtype).to_empty(device=device)
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, values in seeded_tensors(module, seed, device, dtype):
            params[name].copy_(values)
    return module.eval().requires_grad_(False)
