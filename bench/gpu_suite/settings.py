"""What the GPU suite measures, at two sizes: ``full`` (FLUX.1-dev, bf16, on a lent GPU) and ``tiny`` (the CPU
check CI runs so the suite cannot rot). One dataclass, written into the JSON and handed to each section's
subprocess; the command line changes only what ``__main__`` exposes."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class Settings:
    size: str  # bench.common.SIZES key of the forward sections
    device: str
    dtype: str  # bench.common.BENCH_DTYPE_BY_NAME key
    text_tokens: int
    out: int  # output side (pixels) of sections 1, 3, 4
    refs: int
    ref_res: int
    repeat: int  # timed calls after the warm-up
    rounds: int  # section 1: runs of every variant in rotated order
    overhead_grid: str  # bench_diffusers.GRIDS key
    strength_grid: str  # bench_strength.GRIDS key
    compile_size: str  # bench_comfy.SIZES key
    compile_backend: str
    trainer_size: str  # bench_trainer.SIZES key
    trainer_blocks: tuple[int, int]  # double, single
    trainer_refs: int
    budgets: dict[str, float] = field(default_factory=dict)  # seconds per section
    total_budget: float = 0.0  # seconds for all sections
    comfyui_path: str = ""
    official_path: str = ""
    official_python: str = ""
    official_pythonpath: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Settings:
        return cls(**{**data, "trainer_blocks": tuple(data["trainer_blocks"])})


# full: one DreamO step at 1024² + two 512² references, 512 text tokens, FLUX.1-dev in bf16; the sections' budgets
# add up to 440 s, leaving bench/gpu_suite.sh's set-up and a margin inside one 10-minute command
FULL = Settings(size="full", device="cuda", dtype="bf16", text_tokens=512, out=1024, refs=2, ref_res=512, repeat=5,
                rounds=2, overhead_grid="gpu-suite", strength_grid="gpu-suite", compile_size="width",
                compile_backend="inductor", trainer_size="full", trainer_blocks=(19, 38), trainer_refs=2,
                budgets={"official": 150, "overhead": 90, "strength": 35, "compile": 110, "trainer": 55},
                total_budget=450)
# tiny: the same paths on the CPU in fp32 (exact enough to compare core and ComfyUI to 1e-5); torch.compile with
# Dynamo's eager backend (the counts need no compiler)
TINY = Settings(size="tiny", device="cpu", dtype="fp32", text_tokens=8, out=128, refs=2, ref_res=64, repeat=1,
                rounds=2, overhead_grid="tiny", strength_grid="tiny", compile_size="tiny", compile_backend="eager",
                trainer_size="tiny", trainer_blocks=(1, 1), trainer_refs=2,
                budgets={"official": 120, "overhead": 60, "strength": 30, "compile": 90, "trainer": 40},
                total_budget=340)
PRESETS = {"full": FULL, "tiny": TINY}


def settings_for(size: str, device: str | None = None, **overrides: object) -> Settings:
    """The preset of ``size`` on ``device`` (default: the preset's), the checkouts from the environment
    (COMFYUI_PATH, DREAMO_OFFICIAL_PATH / _PYTHON / _PYTHONPATH), then ``overrides`` (None values ignored)."""
    env = dict(comfyui_path=os.environ.get("COMFYUI_PATH", ""),
               official_path=os.environ.get("DREAMO_OFFICIAL_PATH", ""),
               official_python=os.environ.get("DREAMO_OFFICIAL_PYTHON", ""),
               official_pythonpath=os.environ.get("DREAMO_OFFICIAL_PYTHONPATH", ""))
    chosen = {k: v for k, v in overrides.items() if v is not None}
    device = device or PRESETS[size].device
    device = "cuda:0" if device == "cuda" else device  # the index ComfyUI's model management compares devices with
    return replace(PRESETS[size], device=device, **{**env, **chosen})
