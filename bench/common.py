"""Shared helpers of the benchmark scripts: timing, peak memory, models by size, table printing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from dreamo_core.flops import excess_percent

SIZES = {  # diffusers FluxTransformer2DModel kwargs
    "tiny": dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                 joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 6, 6]),
    "small": dict(num_layers=2, num_single_layers=4, attention_head_dim=64, num_attention_heads=4,
                  joint_attention_dim=256, pooled_projection_dim=64, axes_dims_rope=[16, 24, 24]),
    "full": dict(num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
                 joint_attention_dim=4096, pooled_projection_dim=768, axes_dims_rope=[16, 56, 56]),
}


def build_transformer(size: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """Random-weight FLUX transformer of the named size (``full`` = FLUX.1-dev architecture, ~12B params)."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    with torch.device(device):
        model = FluxTransformer2DModel(patch_size=1, in_channels=64, guidance_embeds=True, **SIZES[size])
    return model.to(dtype).eval().requires_grad_(False)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(fn: Callable[[], object], device: str, warmup: int = 1, repeat: int = 3) -> tuple[float, float | None]:
    """(median seconds, peak GPU memory in GiB or None on CPU) of ``fn()``."""
    with torch.no_grad():
        return _measure(fn, device, warmup, repeat)


def _measure(fn: Callable[[], object], device: str, warmup: int, repeat: int) -> tuple[float, float | None]:
    for _ in range(warmup):
        fn()
    sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return statistics.median(times), peak


def fmt_mem(gib: float | None) -> str:
    return "n/a" if gib is None else f"{gib:.2f}"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n## {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


def ratio_cells(base_s: float, s: float, floor: float) -> list[str]:
    """[measured ratio, floor ratio, excess %] cells."""
    ratio = s / base_s
    return [f"{ratio:.3f}", f"{floor:.3f}", f"{excess_percent(ratio, floor):+.1f}%"]
