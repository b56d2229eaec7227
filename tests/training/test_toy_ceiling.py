"""The demo's ceiling rows and base curve: the base alone, told the subjects in words.

``load_base_model`` + ``generate(..., "text_words")`` must sample exactly the frozen base (checked against an
Euler loop written here on ``training.toy.base.base_velocity``); ``train_base`` snapshots must not change the training;
``eval_cases(pool=...)`` must draw only from its pool."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import FluxTransformer2DModel
from safetensors.torch import load_file

from training.sampling import initial_noise, shifted_sigmas
from training.toy.base import PlainText, base_velocity, snapshot_dir, toy_model_config, train_base
from training.toy.codec import ToyCodec
from training.toy.constants import TOKEN_GRID, TOY_DIR, TRUE_CFG
from training.toy.datasets import eval_cases
from training.toy.evaluation import generate, load_base_model, native_images
from training.toy.world import HELD_OUT, TRAIN_SUBJECTS, caption


@torch.no_grad()
def base_by_hand(folder, cases, seed: int, steps: int) -> np.ndarray:
    """Euler on the plain FLUX forward with the official true CFG v_neg + s (v - v_neg), negative prompt ''."""
    transformer = FluxTransformer2DModel.from_pretrained(str(folder)).eval()
    text = PlainText(toy_model_config())
    caps = [caption(c.scene, False) for c in cases]
    z = initial_noise(len(cases), TOKEN_GRID, seed * 1000)  # generate() seeds chunk k at seed * 1000 + k
    sigmas = shifted_sigmas(steps, TOKEN_GRID[0] * TOKEN_GRID[1])
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        t = torch.full((len(cases),), float(s))
        v = base_velocity(transformer, text, z, t, caps, TOKEN_GRID)
        v_neg = base_velocity(transformer, text, z, t, [""] * len(cases), TOKEN_GRID)
        z = z + (s_next - s) * (v_neg + TRUE_CFG * (v - v_neg))
    return native_images(ToyCodec(), z)


def test_base_model_samples_the_plain_base_from_words():
    cases = eval_cases(3, 1, seed=9, pool=TRAIN_SUBJECTS)
    ours = generate(load_base_model(TOY_DIR / "base"), cases, "text_words", seed=2, steps=4)
    ref = base_by_hand(TOY_DIR / "base", cases, seed=2, steps=4)
    assert np.abs(ours - ref).max() < 1e-5
    assert np.abs(ours[0] - ours[1]).max() > 0.1  # different captions and noise give different images


def test_eval_cases_draw_from_their_pool():
    for n_subjects in (1, 2):
        seen = {s for c in eval_cases(30, n_subjects, seed=4, pool=TRAIN_SUBJECTS) for s in c.subjects}
        assert seen <= set(TRAIN_SUBJECTS) and not seen & set(HELD_OUT) and len(seen) > 6
    assert {c.subjects[0] for c in eval_cases(6, 1, seed=4)} == set(HELD_OUT)  # default: held out, each once


def test_base_snapshots_leave_training_unchanged(tmp_path):
    plain = train_base(tmp_path / "a" / "base", steps=4, batch=2, log_every=0)
    snap = train_base(tmp_path / "b" / "base", steps=4, batch=2, log_every=0, snapshot_every=2)
    assert sorted(p.name for p in snapshot_dir(snap).iterdir()) == ["step_2"]  # none at the last step
    final_a = load_file(str(plain / "diffusion_pytorch_model.safetensors"))
    final_b = load_file(str(snap / "diffusion_pytorch_model.safetensors"))
    early = load_file(str(snapshot_dir(snap) / "step_2" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    assert max(float((early[k] - final_b[k]).abs().max()) for k in early) > 0  # two more steps moved the average


def test_routing_mass_of_the_repo_toy():
    """Chance is the mask's token share (4 x 4 native px per token, computed here); the repo's toy, trained with
    L_route, puts more of each reference's attention on its own subject than on the other one's."""
    from training.toy.evaluation import routing_mass
    from training.toy.generate import load_trainer_model

    cases = eval_cases(8, 2, seed=21)
    r = routing_mass(load_trainer_model(), cases)
    own = np.array([[m.reshape(8, 4, 8, 4).mean(axis=(1, 3)) > 0.5 for m in c.scene.masks] for c in cases])
    assert np.allclose(r.chance, own.transpose(1, 0, 2, 3).reshape(16, -1).mean(-1))
    assert ((r.mass >= 0) & (r.mass <= 1)).all()
    swapped = [type(c)(type(c.scene)(c.scene.image, c.subjects, c.scene.masks[::-1], c.scene.references,
                                     c.scene.background, c.scene.places)) for c in cases]
    other = routing_mass(load_trainer_model(), swapped)  # the same attention scored on the other subject's mask
    assert r.mass.mean() > max(2 * r.chance.mean(), other.mass.mean() + 0.1)
