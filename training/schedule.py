"""The stage plan of a global step and its learning rate (``cfg.stages``: the paper's progressive stages)."""

from __future__ import annotations

from .config import StageConfig, TrainConfig


def stage_at(cfg: TrainConfig, step: int) -> tuple[int, StageConfig, int]:
    """(stage number, stage, step within the stage) for a global step."""
    start = 0
    for i, stage in enumerate(cfg.stages):
        if step < start + stage.steps:
            return i, stage, step - start
        start += stage.steps
    raise ValueError(f"step {step} is past the last stage ({cfg.total_steps} steps in all)")


def learning_rate(stage: StageConfig, step_in_stage: int) -> float:
    """Linear warm-up to the stage's lr, then constant."""
    return stage.lr * min(1.0, (step_in_stage + 1) / max(1, stage.warmup))
