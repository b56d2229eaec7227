"""The exported toy DreamO generates the same image in the standalone generator (``DreamOGenerator`` on the two
files) as in the trainer's own sampler (peft LoRA unmerged, the trainer's tables and text rows), on the same seed:
for the repo's trained toy and for a model freshly trained here and exported by the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamo_core.generator.pipeline import ReferenceInput
from training.codec import decode_tokens
from training.config import load_config
from training.loop import train
from training.sampling import euler_sample
from training.toy.codec import ToyCodec
from training.toy.constants import SAMPLE_STEPS, TOKEN_GRID, TOY_DIR, TRUE_CFG
from training.toy.datasets import eval_cases, write_toy_datasets
from training.toy.demo import dreamo_overrides
from training.toy.evaluation import case_references, prompts
from training.toy.generate import load_toy_generator, load_trainer_model, toy_settings
from training.toy.world import upscale

STEPS = SAMPLE_STEPS


def trainer_image(model, case, seed: int) -> torch.Tensor:
    z = euler_sample(model, TOKEN_GRID, case_references([case], ToyCodec()), prompts([case], "refs"), steps=STEPS, seed=seed,
                     true_cfg=TRUE_CFG, negative_prompt="")
    return decode_tokens(ToyCodec(), z, TOKEN_GRID)[0]


def generator_image(gen, case, seed: int) -> torch.Tensor:
    refs = [ReferenceInput(torch.from_numpy(upscale(r)).float() / 255.0, "ip", k)
            for k, r in enumerate(case.scene.references, start=1)]
    return gen.generate(prompts([case], "refs")[0], refs, toy_settings(seed, STEPS))


@pytest.fixture(scope="module")
def repo_toy():
    assert (TOY_DIR / "base" / "config.json").is_file(), "models/toy/base is missing (python -m training.demo --save-toy models/toy)"
    return load_trainer_model(), load_toy_generator()


@pytest.mark.parametrize("n_refs, seed", [(1, 0), (2, 5)])
def test_repo_toy_generator_equals_trainer_sampler(repo_toy, n_refs, seed):
    model, gen = repo_toy
    case = eval_cases(1, n_refs, seed=77 + n_refs)[0]
    a, b = trainer_image(model, case, seed), generator_image(gen, case, seed)
    assert a.shape == b.shape == (128, 128, 3)
    assert (a - b).abs().max() < 2e-4
    other = generator_image(gen, case, seed + 1)  # the seed matters: agreement is not a constant image
    assert (other - b).abs().max() > 0.05


def test_generator_without_the_dreamo_file_differs(repo_toy):
    _, gen = repo_toy
    case = eval_cases(1, 1, seed=3)[0]
    plain = load_toy_generator(dreamo=None)
    with pytest.raises(ValueError, match="references need the DreamO embeddings"):
        generator_image(plain, case, 0)
    base_img = plain.generate(prompts([case], "text_only")[0], [], toy_settings(0, STEPS))
    assert (base_img - gen.generate(prompts([case], "text_only")[0], [], toy_settings(0, STEPS))).abs().max() > 1e-3


def test_freshly_trained_export_matches_its_trainer(tmp_path):
    data = write_toy_datasets(tmp_path / "data", n_single=8, n_multi=8, n_self=4)
    cfg = load_config(None, dreamo_overrides(tmp_path / "run", data, TOY_DIR / "base", 10, 1.0))
    model = train(cfg).model.eval()
    gen = load_toy_generator(dreamo=tmp_path / "run" / "dreamo_trained.safetensors")
    case = eval_cases(1, 2, seed=11)[0]
    a, b = trainer_image(model, case, 3), generator_image(gen, case, 3)
    assert (a - b).abs().max() < 2e-4
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-4)
