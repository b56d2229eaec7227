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


def launch_two_processes(script: str, args: list[str], timeout_s: float) -> tuple[str, str]:
    """("exit N" or "timed out", the output's tail) of ``tests/training/SCRIPT ARGS`` on 2 CPU processes
    (``torch.distributed.run``, gloo; what ``accelerate launch --multi_gpu`` runs on GPUs). A hanging rank would
    wait for gloo's 30 min timeout: the whole process group is killed after ``timeout_s``."""
    import os
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(root / "tests" / "training" / script), *args]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
        return f"exit {proc.returncode}", output[-4000:]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
        return "timed out", proc.communicate()[0][-4000:]


@pytest.fixture(scope="session")
def two_processes():
    return launch_two_processes


@pytest.fixture(scope="session")
def overrides_for(dataset_dirs: dict[str, Path]):
    return lambda out: tiny_overrides(dataset_dirs, out)


@pytest.fixture
def tiny_config(dataset_dirs: dict[str, Path], tmp_path: Path):
    def make(out: Path | None = None, extra: list[str] | None = None):
        return load_config(None, tiny_overrides(dataset_dirs, out or tmp_path / "run") + (extra or []))

    return make


# The preference stage's tests: a tiny pair world written by the stage's own pair builder (training.preference.pairs).
PAIR_COLOURS = ((220, 40, 40), (40, 160, 60), (40, 60, 220), (230, 200, 40), (160, 60, 200), (40, 200, 210))


def pair_world_sample(prompt, seed: int):
    """A 64 x 64 scene: a gray background with seed-dependent speckles, and in the prompt's region box a disc of
    the reference's colour (even seeds) or of the next colour (odd seeds: the wrong identity)."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    rgb = tuple(int(v) for v in np.asarray(Image.open(prompt.references[0].image).convert("RGB"))[16, 16])
    colour = rgb if seed % 2 == 0 else PAIR_COLOURS[(PAIR_COLOURS.index(rgb) + 1) % len(PAIR_COLOURS)]
    img = np.full((64, 64, 3), 128, dtype=np.uint8)
    img[np.random.default_rng(seed).random((64, 64)) < 0.05] = 100
    im = Image.fromarray(img)
    ImageDraw.Draw(im).ellipse(prompt.region_box, fill=colour)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)


def pair_world_score(prompt, image) -> float:
    """1 when the centre of the region box has the reference's colour, else 0 (the 'detector')."""
    import numpy as np
    from PIL import Image

    want = np.asarray(Image.open(prompt.references[0].image).convert("RGB"), dtype=np.float32)[16, 16] / 255.0
    x0, y0, x1, y1 = prompt.region_box
    got = image[(y0 + y1) // 2, (x0 + x1) // 2].numpy()
    return float(np.abs(got - want).max() < 0.02)


def pair_world_prompts(root: Path) -> list:
    """Six prompts: a disc of each colour as the reference (32 x 32 on white), at a corner of the 64 x 64 scene."""
    from PIL import Image, ImageDraw

    from training.preference.pairs import PairPrompt, PairReference

    root.mkdir(parents=True, exist_ok=True)
    boxes = ((4, 4, 36, 36), (28, 4, 60, 36), (4, 28, 36, 60), (28, 28, 60, 60))
    prompts = []
    for i, colour in enumerate(PAIR_COLOURS):
        ref = Image.new("RGB", (32, 32), (255, 255, 255))
        ImageDraw.Draw(ref).ellipse((4, 4, 28, 28), fill=colour)
        ref.save(root / f"ref{i}.png")
        prompts.append(PairPrompt("a [ref#1] on a gray floor", (PairReference(root / f"ref{i}.png", "ip", 1),),
                                  "a disc on a gray floor", boxes[i % 4]))
    return prompts


@pytest.fixture(scope="session")
def pair_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.preference.pairs import build_preference_pairs

    root = tmp_path_factory.mktemp("pairs")
    return build_preference_pairs(pair_world_prompts(root / "prompts"), pair_world_sample, pair_world_score,
                                  root / "data", samples_per_prompt=2).folder


def pair_overrides(pairs: Path, out: Path) -> list[str]:
    """The preference stage on the tiny model: 4 steps of batch 4 (checkpoints at 2 and 4), localized LDPO."""
    return [f"--data.datasets={{pairs: '{pairs}'}}", "--data.buckets=[[64, 64]]", "--data.ref_res=32",
            "--data.batch_size=4", "--model.lora_rank=4", "--model.num_layers=1", "--model.num_single_layers=1",
            f"--output_dir={out}", "--progress=false", "--checkpoint_every=2", "--log_every=1",
            "--stages=[{name: pref, steps: 4, lr: 0.002, mixture: {pairs: 1.0}}]", "--preference.beta=200",
            "--preference.localized=true", "--preference.anchor=0.5"]


@pytest.fixture(scope="session")
def pair_overrides_for(pair_dir: Path):
    return lambda out: pair_overrides(pair_dir, out)


@pytest.fixture(scope="session")
def pair_world():
    """The pair world's prompts (a folder -> six prompts), sampler and scorer."""
    from types import SimpleNamespace

    return SimpleNamespace(prompts=pair_world_prompts, sample=pair_world_sample, score=pair_world_score)


def yaml_config(path: Path, overrides: list[str], extra: str = "") -> Path:
    """The overrides written as a YAML config file (+ ``extra`` YAML text), for the commands."""
    import yaml

    from training.config import apply_override

    data: dict = {}
    for o in overrides:
        apply_override(data, o)
    path.write_text(yaml.safe_dump(data) + extra)
    return path


@pytest.fixture(scope="session")
def config_file():
    return yaml_config


def fixed_dreamo_forward(transformer, model, caption: str):
    """``transformer``'s DreamO velocity at fixed noise (one 2 x 2-token reference, σ 0.6, guidance 3.5) with
    ``model``'s text encoder and tables: compares a generator's fused transformer with a trained model's."""
    import torch

    from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward

    g = torch.Generator().manual_seed(0)
    lat = torch.randn(1, 16, 64, generator=g)
    refs = [ReferenceTokens(torch.randn(1, 4, 64, generator=g), (2, 2), 1)]
    pe, pooled, _ = model.encode_text([caption])
    with torch.no_grad():
        return dreamo_transformer_forward(transformer, lat, (4, 4), refs, torch.tensor([0.6]), torch.tensor([3.5]),
                                          pooled, pe, model.tables)


@pytest.fixture(scope="session")
def fixed_forward():
    return fixed_dreamo_forward
