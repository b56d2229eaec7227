"""Shared helpers of the benchmark scripts: timing, peak memory, models by size, table printing."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TypeVar

import torch

from bench.flops import FLUX_TEXT_TOKENS, excess_percent
from bench.seeded_weights import materialize_seeded
from dreamo_core.generator.tiny import TINY_TRANSFORMER, flux_transformer
from dreamo_core.spec import FLUX_DEV, DreamOSpec

SIZES = {  # diffusers FluxTransformer2DModel sizes (dreamo_core.generator.tiny.flux_transformer)
    "tiny": dict(TINY_TRANSFORMER),
    "small": dict(num_layers=2, num_single_layers=4, attention_head_dim=64, num_attention_heads=4,
                  joint_attention_dim=256, pooled_projection_dim=64, axes_dims_rope=[16, 24, 24]),
    # FLUX.1-dev width (D 3072, 24 heads x 128, T5 4096) with 2 + 2 blocks: per-block costs as in the full model,
    # so ratios follow the same FLOPs model, at a size a CPU can run
    "width": FLUX_DEV.diffusers_config(num_layers=2, num_single_layers=2),
    "full": FLUX_DEV.diffusers_config(),
}


WEIGHTS_SEED = 0  # of every bench's random transformer weights (bench.seeded_weights)


def build_transformer(size: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """Random-weight FLUX transformer of the named size (``full`` = FLUX.1-dev architecture, ~12B params), built on
    the meta device and filled on ``device`` in ``dtype`` with ``WEIGHTS_SEED``'s seeded weights (no fp32 copy;
    the same values in any diffusers version). Eval mode, no grad."""
    return materialize_seeded(flux_transformer(0, "meta", None, **SIZES[size]), WEIGHTS_SEED, device, dtype)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


T = TypeVar("T")
Measured = tuple[float, "float | None"]  # (seconds, peak GPU GiB or None) of one call


def clocked(fn: Callable[[], T], device: str) -> tuple[float, T]:
    """(seconds, result) of one call of ``fn``: on CUDA by CUDA events recorded around the call after a sync (the
    GPU time of this call's kernels), elsewhere by the wall clock."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3, out
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def timed(fn: Callable[[], object], device: str) -> Callable[[], Measured]:
    """``fn`` as a call that returns its own (seconds, peak GPU GiB or None)."""
    def call() -> Measured:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        seconds, _ = clocked(fn, device)
        return seconds, torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return call


def interleaved(calls: Sequence[Callable[[], Measured]], repeat: int = 3
                ) -> tuple[list[float], list[float], list[float | None]]:
    """Run ``calls`` interleaved: one warm-up each, then ``repeat`` rounds calling each once, the order rotated by
    one each round (with ``repeat`` a multiple of ``len(calls)`` every call runs in every position equally often).

    Returns (median seconds of each, median of the per-round ratios call_i / call_0, peak GPU GiB of each or None
    on CPU). Pairing the calls of a round cancels the slow drift of a shared machine."""
    with torch.no_grad():
        for call in calls:
            call()
        runs: list[list[Measured]] = [[] for _ in calls]
        for r in range(repeat):
            for i in [(j + r) % len(calls) for j in range(len(calls))]:  # rotated: no call always runs first
                runs[i].append(calls[i]())
    times = [[m[0] for m in rs] for rs in runs]
    ratios = [statistics.median(t / b for b, t in zip(times[0], ts)) for ts in times]
    peaks = [max(p) if (p := [m[1] for m in rs if m[1] is not None]) else None for rs in runs]
    return [statistics.median(ts) for ts in times], ratios, peaks


def same_token_grid(total_tokens: int) -> tuple[int, int]:
    """A (16, W) token grid of ``total_tokens`` image tokens: the plain model run at DreamO's token count, so that
    DreamO / same-token plain isolates our implementation's overhead from how the kernels scale with tokens."""
    if total_tokens % 16:
        raise ValueError(f"same_token_grid: {total_tokens} tokens are not a multiple of 16")
    return 16, total_tokens // 16


def reset_peak_rss() -> bool:
    """Return freed heap to the OS and restart this process's peak-RSS count (Linux ``/proc/self/clear_refs``),
    so that a later ``peak_rss_gib()`` measures from now on. False where the kernel does not allow it (the peak
    then counts from the process start)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_gib() -> float:
    """This process's peak resident memory in GiB: ``VmHWM`` (since the last ``reset_peak_rss``), else
    ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def fmt_mem(gib: float | None) -> str:
    return cell(gib, ".2f")


def cell(value: float | None, fmt: str) -> str:
    """``value`` formatted, or n/a."""
    return "n/a" if value is None else format(value, fmt)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print(f"\n## {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


def overhead_row(out: int, n_refs: int, ref_res: int, seconds: list[float], ratios: list[float],
                 peaks: list[float | None], floor: float) -> dict:
    """One grid point of the overhead tables from ``interleaved`` over [plain, DreamO, same-token plain]: times
    in ms, DreamO / plain (``ratio``), the FLOPs floor, the excess over it (%), the overhead over the same-token plain
    model (%: DreamO / plain at DreamO's token count), peak GPU GiB (None on CPU)."""
    ratio, same_token_ratio = ratios[1], ratios[1] / ratios[2]
    return {"output": out, "refs": n_refs, "ref_res": ref_res if n_refs else None, "plain_ms": seconds[0] * 1e3,
            "dreamo_ms": seconds[1] * 1e3, "same_token_plain_ms": seconds[2] * 1e3, "ratio": ratio, "floor": floor,
            "excess_pct": excess_percent(ratio, floor), "overhead_pct": (same_token_ratio - 1) * 100,
            "plain_gib": peaks[0], "dreamo_gib": peaks[1]}


def overhead_cells(r: dict) -> list[str]:
    """The ``HEADER`` cells of an ``overhead_row``."""
    return [f"{r['output']}²", str(r["refs"]), str(r["ref_res"] or "-"), f"{r['plain_ms']:.1f}", f"{r['dreamo_ms']:.1f}",
            f"{r['same_token_plain_ms']:.1f}", f"{r['ratio']:.3f}", f"{r['floor']:.3f}", f"{r['excess_pct']:+.1f}%",
            f"{r['overhead_pct']:+.1f}%", fmt_mem(r["plain_gib"]), fmt_mem(r["dreamo_gib"])]


HEADER = ["output", "refs", "ref res", "plain ms", "DreamO ms", "same-token plain ms", "ratio", "floor", "excess",
          "overhead", "plain GiB", "DreamO GiB"]


def size_spec(size: str) -> DreamOSpec:
    """The DreamOSpec of the diffusers transformer ``SIZES[size]`` (``full``: FLUX_DEV; ``width``: FLUX_DEV with
    2 + 2 blocks): its widths for the tokens and FLOPs, its ComfyUI FluxParams for the ComfyUI benches."""
    return DreamOSpec.of_diffusers_config(SimpleNamespace(**SIZES[size]))


def profile_delta(runs: dict[str, Callable[[], object]], plain: str, routed: str, steps: int = 5, top: int = 12) -> None:
    """Print self CPU (and device) time per op of ``runs[routed]`` minus ``runs[plain]``, ``steps`` calls each."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    totals = {}
    for name in (plain, routed):
        with torch_profile(activities=acts) as prof:
            for _ in range(steps):
                runs[name]()
        totals[name] = {e.key: (e.self_cpu_time_total, getattr(e, "self_device_time_total", 0), e.count)
                        for e in prof.key_averages()}
    keys = set(totals[plain]) | set(totals[routed])
    zero = (0, 0, 0)
    delta = {k: tuple(r - q for r, q in zip(totals[routed].get(k, zero), totals[plain].get(k, zero))) for k in keys}
    all_plain = sum(v[0] for v in totals[plain].values())
    all_routed = sum(v[0] for v in totals[routed].values())
    print(f"\n## Profile: '{routed}' minus '{plain}', {steps} steps each\n")
    print(f"self CPU time: '{plain}' {all_plain / 1e3 / steps:.1f} ms/call, '{routed}' {all_routed / 1e3 / steps:.1f} ms/call\n")
    print("| op | extra self CPU ms/call | extra device ms/call | extra calls/call |\n|---|---|---|---|")
    for k, (cpu, dev, cnt) in sorted(delta.items(), key=lambda kv: -max(kv[1][0], kv[1][1]))[:top]:
        print(f"| {k} | {cpu / 1e3 / steps:.2f} | {dev / 1e3 / steps:.2f} | {cnt / steps:.0f} |")


BENCH_DTYPE_BY_NAME = {"fp32": torch.float32, "bf16": torch.bfloat16}  # --dtype: weights and inputs of a bench


def forward_bench_arguments(doc: str, sizes: list[str], grids: list[str]) -> argparse.ArgumentParser:
    """The options both forward benchmarks take: size, device, dtype (a ``BENCH_DTYPE_BY_NAME`` key), grid, repeat,
    text tokens."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sizes, default="small")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(BENCH_DTYPE_BY_NAME), default="fp32")
    p.add_argument("--grid", choices=grids, default="quick")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--text-tokens", type=int, default=FLUX_TEXT_TOKENS)
    return p

