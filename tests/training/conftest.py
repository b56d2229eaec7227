"""Shared fixtures: a small synthetic dataset and tiny trainer configs (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from training.config import load_config  # noqa: E402
from training.toy.synthetic import make_synthetic_dataset  # noqa: E402


@pytest.fixture(scope="session")
def dataset_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    return {
        "subject": make_synthetic_dataset(root / "subject", 12, seed=0, size=(64, 64), ref_size=32),
        "self": make_synthetic_dataset(root / "self", 4, seed=1, size=(64, 64), kind="self"),
    }


def tiny_overrides(dataset_dirs: dict[str, Path], out: Path) -> list[str]:
    return [
        f"--data.datasets={{subject: '{dataset_dirs['subject']}', self: '{dataset_dirs['self']}'}}",
        "--data.buckets=[[64, 64]]", "--data.ref_res=32", "--data.batch_size=4",
        "--model.lora_rank=4", "--model.num_layers=1", "--model.num_single_layers=1",
        f"--output_dir={out}", "--progress=false", "--checkpoint_every=2",
        "--stages=[{name: s1, steps: 3, lr: 0.002, mixture: {subject: 1.0}}, "
        "{name: s3, steps: 3, lr: 0.001, mixture: {subject: 1.0, self: 1.0}, ref_token_drop: 0.95}]",
    ]


@pytest.fixture(scope="session")
def overrides_for(dataset_dirs: dict[str, Path]):
    return lambda out: tiny_overrides(dataset_dirs, out)


@pytest.fixture
def tiny_config(dataset_dirs: dict[str, Path], tmp_path: Path):
    def make(out: Path | None = None, extra: list[str] | None = None):
        return load_config(None, tiny_overrides(dataset_dirs, out or tmp_path / "run") + (extra or []))

    return make
