"""What the suite ran on, for the report: the card, the stacks and the checkouts."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import re
import subprocess
from pathlib import Path

import torch

from bench.comfy_harness import COMFYUI_ABSENT, COMFYUI_UNUSED
from bench.flops import card_bf16_peak
from bench.gpu_suite.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def comfyui_version(path: str) -> str:
    found = re.search(r'__version__\s*=\s*"([^"]+)"', Path(path, "comfyui_version.py").read_text()) \
        if Path(path, "comfyui_version.py").is_file() else None
    return found.group(1) if found else "absent"


def repo_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown (no git)"


def environment(s: Settings) -> dict:
    cuda = s.device.startswith("cuda") and torch.cuda.is_available()
    name = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    return {
        "device": name,
        "device_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
        "bf16_peak_tflops": (card_bf16_peak(name) or 0) / 1e12 if cuda else None,
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "diffusers": version("diffusers"), "transformers": version("transformers"), "peft": version("peft"),
        "comfyui": comfyui_version(s.comfyui_path), "comfy_kitchen": version("comfy-kitchen"),
        "stand_ins": [n for n in (*COMFYUI_ABSENT, *COMFYUI_UNUSED) if importlib.util.find_spec(n) is None],
        "official_checkout": s.official_path or "none", "official_pythonpath": s.official_pythonpath or "none",
        "repo_commit": repo_commit(),
    }
