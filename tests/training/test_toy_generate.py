"""The exported toy DreamO gives the same image three ways on the same seed: the standalone generator
(``DreamOGenerator`` on the two files), the trainer's own model (peft LoRA unmerged, the trainer's tables and text
rows) and the evaluation's model (the file merged into the base, batched sampler) — for the repo's trained toy and
for a model freshly trained and exported here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamo_core.generator.pipeline import ReferenceInput
from training.config import load_config
from training.loop import train
from training.toy.constants import TOY_DIR
from training.toy.datasets import eval_cases, write_toy_datasets
from training.toy.evaluation import generate, load_exported_model, sample_seed
from training.toy.generate import load_toy_generator, load_trainer_model, toy_settings
from training.toy.recipe import Run, dreamo_overrides
from training.toy.world import downscale, place_box, upscale


def generator_image(gen, case, seed: int, placed: bool) -> np.ndarray:
    refs = []
    for index in range(1, len(case.glyphs) + 1):
        k = case.glyph_of(index)
        refs.append(ReferenceInput(torch.from_numpy(upscale(case.glyphs[k].pixels())).float() / 255.0, "ip", index,
                                   box=place_box(case.scene.places[k]) if placed else None))
    return downscale(gen.generate(case.prompt(), refs, toy_settings(seed)).numpy())


@pytest.fixture(scope="module")
def repo_toy():
    assert (TOY_DIR / "manifest.json").is_file(), "models/toy is missing (python -m training.toy.retrain --save-toy models/toy)"
    return load_trainer_model().eval(), load_toy_generator(), load_exported_model(TOY_DIR / "base", TOY_DIR / "runs" / "placed_route_s0.safetensors")


@pytest.mark.parametrize("n_glyphs", [1, 2])
def test_repo_toy_three_ways_agree(repo_toy, n_glyphs):
    trainer_model, gen, merged = repo_toy
    case = eval_cases(3, n_glyphs, seed=77 + n_glyphs)[2]
    seed = sample_seed(0, 5)
    a = generate(trainer_model, [case], "refs", True, numbers=[5])[0]  # trainer's model: LoRA unmerged (peft)
    b = generator_image(gen, case, seed, placed=True)
    c = generate(merged, [case], "refs", True, numbers=[5])[0]
    assert a.shape == b.shape == (32, 32, 3)
    assert np.abs(a - b).max() < 2e-4 and np.abs(c - b).max() < 2e-5
    other = generator_image(gen, case, seed + 1, placed=True)  # the seed matters: agreement is not a constant image
    assert np.abs(other - b).max() > 0.05


def test_generator_without_the_dreamo_file_refuses_references(repo_toy):
    _, gen, _ = repo_toy
    case = eval_cases(1, 1, seed=3)[0]
    plain = load_toy_generator(dreamo=None)
    with pytest.raises(ValueError, match="references need the DreamO embeddings"):
        generator_image(plain, case, 0, placed=True)


def test_freshly_trained_export_matches_its_trainer(tmp_path):
    data = write_toy_datasets(tmp_path / "data", n_single=8, n_multi=8, n_self=4)
    cfg = load_config(None, dreamo_overrides(Run("box", 0.5, 0), tmp_path / "run", data, TOY_DIR / "base", 10))
    model = train(cfg).model.eval()
    gen = load_toy_generator(dreamo=tmp_path / "run" / "dreamo_trained.safetensors")
    case = eval_cases(1, 2, seed=11)[0]
    a = generate(model, [case], "refs", True, numbers=[3])[0]
    b = generator_image(gen, case, sample_seed(0, 3), placed=True)
    assert np.abs(a - b).max() < 2e-4
    diagonal = generator_image(gen, case, sample_seed(0, 3), placed=False)  # the box reaches the generator's ids
    assert np.abs(diagonal - b).max() > 1e-3
