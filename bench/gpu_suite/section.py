"""What a section of the GPU suite is: a title, a one-line plan, a time estimate and the parts it runs (each in the
section's subprocess, one after the other, each skipped with a reason where its checkout is missing or the
section's time is up), with the Markdown of a part's rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.flops import card_bf16_peak, forward_flops
from bench.gpu_suite.settings import Settings
from dreamo_core.spec import DreamOSpec

ASSUMED_SHARE = 0.45  # of the card's bf16 peak, for the estimates only
# seconds to start a subprocess and build its model (imports, CUDA context, seeded weights made on the device;
# ComfyUI also imports and registers its extra nodes): assumptions for the GPU, measured on a 2-core CI machine
START_S = {"cuda": {"diffusers": 15.0, "comfyui": 30.0}, "cpu": {"diffusers": 8.0, "comfyui": 16.0}}
CPU_STEP_S = 0.3  # a tiny model's step on the CI machine (dominated by per-call overhead)

Rows = list[dict]
PartRun = Callable[[Settings, float | None], dict]  # (settings, deadline) -> {"rows": [...], "notes": [...]}


@dataclass(frozen=True)
class Part:
    name: str
    run: PartRun
    skip: str | None = None  # why it cannot run here (checked before the subprocess starts)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    plan: Callable[[Settings], str]  # what it measures at these settings, one line
    estimate: Callable[[Settings], float]  # seconds
    parts: Callable[[Settings], list[Part]]
    markdown: Callable[[str, dict], list[str]]  # (part name, its result) -> Markdown lines


def device_kind(s: Settings) -> str:
    return "cuda" if s.device.startswith("cuda") else "cpu"


def start_s(s: Settings, stack: str) -> float:
    return START_S[device_kind(s)][stack]


def step_s(s: Settings, spec: DreamOSpec, image_tokens: int, passes: float = 1.0) -> float:
    """Estimated seconds of ``passes`` forwards over ``image_tokens`` + the text: FLOPs at ``ASSUMED_SHARE`` of the
    card's bf16 peak (an H100's where unknown) on a GPU, ``CPU_STEP_S`` on the CPU."""
    if device_kind(s) == "cpu":
        return CPU_STEP_S * passes
    peak = card_bf16_peak(gpu_name()) or card_bf16_peak("H100")
    return passes * 2 * forward_flops(image_tokens, s.text_tokens, spec).total / (peak * ASSUMED_SHARE)


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else ""


def comfyui_missing(s: Settings) -> str | None:
    from pathlib import Path

    if not Path(s.comfyui_path, "comfy", "samplers.py").is_file():
        return f"no ComfyUI tree (COMFYUI_PATH / --comfyui-path: {s.comfyui_path!r})"
    return None


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]
