"""Multi-process helpers of the trainer: rank 0's decisions broadcast, FSDP2 sharding, gradient-sync control.

- ``broadcast_json`` / ``broadcast_tensors``: process 0's value on every process (JSON bytes and raw tensors
  over ``torch.distributed``; no pickle). Used to resume without a shared filesystem: only process 0 needs to
  see the checkpoint.
- ``shard_model`` (``distributed: fsdp``): FSDP2 ``fully_shard`` on every transformer block, every T5 block and
  the root, on a 1-D device mesh of all processes. Accelerate's FSDP plugin is not used: on CPU (gloo)
  Accelerate ignores it and silently builds DDP (distributed type MULTI_CPU), so the same code path is taken on
  CPU and GPU. bf16: parameters all-gathered in bf16, gradients reduced in fp32 (``MixedPrecisionPolicy``).
- ``grad_sync``: Accelerate's ``accumulate`` (DDP ``no_sync`` on non-final micro-steps); for FSDP2 also
  ``set_requires_gradient_sync`` (Accelerate only knows FSDP2 models it wrapped itself).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from accelerate import Accelerator

DTYPE_BY_NAME = {str(d): d for d in (torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int64,
                                     torch.int32, torch.uint8, torch.bool)}  # "torch.float32" -> torch.float32


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def comm_device() -> torch.device:
    """Where collectives need their tensors: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_json(obj: Any) -> Any:
    """Process 0's JSON-able ``obj`` on every process (others may pass anything)."""
    if not distributed():
        return obj
    device = comm_device()
    data = json.dumps(obj).encode() if dist.get_rank() == 0 else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, 0)
    buf = torch.zeros(int(size), dtype=torch.uint8, device=device)
    if dist.get_rank() == 0:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, 0)
    return json.loads(bytes(buf.cpu().tolist()).decode())


def broadcast_tensors(tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Process 0's ``{name: tensor}`` (CPU) on every process: a JSON header of names, shapes and dtypes, then
    one broadcast per tensor."""
    if not distributed():
        return dict(tensors or {})
    header = broadcast_json({k: [list(v.shape), str(v.dtype)] for k, v in (tensors or {}).items()}
                            if dist.get_rank() == 0 else None)
    device, out = comm_device(), {}
    for name, (shape, dtype) in header.items():
        t = (tensors[name].to(device).contiguous() if dist.get_rank() == 0
             else torch.empty(shape, dtype=DTYPE_BY_NAME[dtype], device=device))
        dist.broadcast(t, 0)
        out[name] = t.cpu()
    return out


def all_true(flag: bool) -> bool:
    """True on every process when ``flag`` is True on every process."""
    if not distributed():
        return flag
    t = torch.tensor([0 if flag else 1], dtype=torch.int64, device=comm_device())
    dist.all_reduce(t)
    return int(t) == 0


def any_true(flag: bool) -> bool:
    """True on every process when ``flag`` is True on any process."""
    return not all_true(not flag)


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    """The modules sharded one by one: every FLUX double and single block and every T5 encoder block."""
    units = [*model.transformer.transformer_blocks, *model.transformer.single_transformer_blocks]
    t5 = next((m for m in model.text_encoder.modules() if hasattr(m, "encoder") and hasattr(m.encoder, "block")), None)
    if t5 is not None:
        units += list(t5.encoder.block)
    return units


def shard_model(model: nn.Module, device: torch.device, bf16: bool) -> nn.Module:
    """FSDP2 ``fully_shard`` of ``fsdp_units(model)`` and the root, in place (the root returned)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # cast_forward_inputs=False: autocast already sets the compute dtype, and FSDP's input cast rebuilds
    # dataclass arguments, so the blocks would record into a copy of the RoutingCapture (found by the tests)
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32 if bf16 else None,
                              cast_forward_inputs=False)
    for unit in fsdp_units(model):
        fully_shard(unit, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextmanager
def grad_sync(acc: Accelerator, model: nn.Module) -> Iterator[bool]:
    """One micro-step: gradients are all-reduced only on the last of ``gradient_accumulation_steps``; yields
    whether this one syncs."""
    with acc.accumulate(model):
        sync = acc.sync_gradients
        if is_sharded(model):
            model.set_requires_gradient_sync(sync)
        try:
            yield sync
        finally:
            if is_sharded(model):
                model.set_requires_gradient_sync(True)
