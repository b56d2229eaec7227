"""The toy world: its codec is exact, its detector finds exactly what the renderer drew, held-out subjects never
reach training data, the metric intervals match textbook values, and the sampler's schedule is the generator's."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from training.codec import decode_tokens, encode_tokens
from training.data import read_metadata
from training.toy.codec import ToyCodec
from training.toy.datasets import eval_cases, write_group
from training.toy.metrics import binding, bootstrap_difference, detect, fidelity, has_color, wilson
from training.toy.world import (
    ALL_SUBJECTS,
    BACKGROUNDS,
    COLORS,
    HELD_OUT,
    PATTERNS,
    SHAPES,
    TRAIN_SUBJECTS,
    Subject,
    draw_subjects,
    make_scene,
    paint,
    upscale,
)


def test_codec_is_exact_on_toy_images_and_a_block_mean_otherwise():
    codec = ToyCodec()
    g = torch.Generator().manual_seed(0)
    native = torch.rand(2, 3, 8, 12, generator=g) * 2 - 1
    toy = native.repeat_interleave(4, 2).repeat_interleave(4, 3)  # what a toy file holds
    z = codec.encode(toy)
    assert z.shape == (2, 16, 4, 6)
    assert torch.allclose(codec.decode(z), toy, atol=1e-5)
    any_img = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    block_mean = any_img.reshape(1, 3, 8, 4, 8, 4).mean((3, 5))  # independent: 4x4 means, repeated back
    expected = block_mean.repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert torch.allclose(codec.decode(codec.encode(any_img)), expected, atol=1e-5)
    tokens, grid = encode_tokens(codec, (toy.permute(0, 2, 3, 1) + 1) / 2)
    assert tokens.shape == (2, 2 * 3, 64) and grid == (2, 3)  # 2x2 latent pixels per 64-d token, as FLUX
    assert torch.allclose(decode_tokens(codec, tokens, grid), (toy.permute(0, 2, 3, 1) + 1) / 2, atol=1e-5)


def test_detector_finds_exactly_the_rendered_subjects():
    rng = np.random.default_rng(7)
    for i in range(120):
        subjects = draw_subjects(rng, ALL_SUBJECTS, 1 + i % 2)
        scene = make_scene(rng, subjects)
        got = sorted((d.color, d.shape, d.pattern) for d in detect(scene.image))
        assert got == sorted((s.color, s.shape, s.pattern) for s in subjects), (i, subjects)
        for ref, s in zip(scene.references, subjects):
            assert [(d.color, d.shape, d.pattern) for d in detect(ref)] == [(s.color, s.shape, s.pattern)]


def test_detector_sees_nothing_on_backgrounds_and_noise():
    for rgb in BACKGROUNDS.values():
        assert detect(np.full((32, 32, 3), rgb, np.uint8)) == []
    gray = np.random.default_rng(0).integers(100, 160, (32, 32, 1)).repeat(3, -1).astype(np.uint8)
    assert detect(gray) == []


def test_fidelity_and_binding_fail_on_the_wrong_subject_and_see_swaps():
    red_circle, blue_square = Subject("red", "circle", "solid"), Subject("blue", "square", "striped")
    img = np.full((32, 32, 3), BACKGROUNDS["gray"], np.uint8)
    paint(img, red_circle, (2, 4, 14, 16))
    paint(img, blue_square, (18, 10, 30, 22))
    assert fidelity(img, red_circle) and fidelity(img, blue_square, with_pattern=True)
    assert not fidelity(img, Subject("red", "square", "solid")) and not fidelity(img, Subject("green", "circle", "solid"))
    assert not fidelity(img, Subject("red", "circle", "striped"), with_pattern=True)
    assert binding(img, red_circle, blue_square).both and not binding(img, red_circle, blue_square).swap
    swapped = np.full((32, 32, 3), BACKGROUNDS["gray"], np.uint8)
    paint(swapped, Subject("red", "square", "solid"), (2, 4, 14, 16))
    paint(swapped, Subject("blue", "circle", "solid"), (18, 10, 30, 22))
    b = binding(swapped, red_circle, blue_square)
    assert not b.both and b.swap


def test_held_out_subjects_never_reach_training_data(tmp_path):
    assert len(ALL_SUBJECTS) == len(COLORS) * len(SHAPES) * len(PATTERNS) and len(HELD_OUT) == 6
    assert not set(HELD_OUT) & set(TRAIN_SUBJECTS)
    for attr, values in (("color", COLORS), ("shape", SHAPES), ("pattern", PATTERNS)):  # each still seen in training
        assert {getattr(s, attr) for s in TRAIN_SUBJECTS} == set(values)
    root = write_group(tmp_path / "multi", 40, 2, seed=3)
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    held = {s.words for s in HELD_OUT}
    for row in rows:
        assert not any(w in row["plain_caption"] for w in held)
        assert re.fullmatch(r"a \[ref#1\] at \w+ left and a \[ref#2\] at \w+ right on a \w+ background", row["caption"])
    assert len(read_metadata(root, [[128, 128]], 96)) == 40  # the trainer's row check accepts every row
    for case in eval_cases(12, 2, seed=5):
        assert all(s in HELD_OUT for s in case.subjects) and len({s.color for s in case.subjects}) == 2


def test_rendered_files_are_four_times_the_native_pixels():
    scene = make_scene(np.random.default_rng(1), [TRAIN_SUBJECTS[0]])
    big = upscale(scene.image)
    assert big.shape == (128, 128, 3) and (big[::4, ::4] == scene.image).all() and (big[3::4, 1::4] == scene.image).all()


def test_wilson_interval_matches_textbook_values():
    lo, hi = wilson(8, 10)  # Wilson (1927) / Newcombe (1998) example: 0.490 .. 0.943
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 20)[0] == 0.0 and wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-3)


def test_bootstrap_difference_brackets_the_true_difference():
    rng = np.random.default_rng(0)
    a, b = (rng.random(400) < 0.7).astype(int), (rng.random(400) < 0.4).astype(int)
    lo, hi = bootstrap_difference(a, b)
    assert lo < a.mean() - b.mean() < hi and lo > 0.15 and hi < 0.45
    assert bootstrap_difference(a, a) == (0.0, 0.0)


def test_sampler_schedule_is_the_generators_scheduler():
    from dreamo_core.generator.schedule import dreamo_sigmas, flux_mu, make_scheduler
    from training.sampling import initial_noise, shifted_sigmas

    for steps, tokens in ((12, 64), (5, 256), (1, 1024)):
        sched = make_scheduler()
        sched.set_timesteps(sigmas=dreamo_sigmas(steps), mu=flux_mu(tokens))
        assert torch.allclose(shifted_sigmas(steps, tokens), sched.sigmas.float(), atol=1e-6)
    noise = initial_noise(1, (8, 8), seed=3)
    raw = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noise[0, 0, :4], torch.stack([raw[0, 0, 0, 0], raw[0, 0, 0, 1], raw[0, 0, 1, 0], raw[0, 0, 1, 1]]))


def test_colour_only_score_accepts_a_blob_that_no_shape_fits():
    img = np.full((32, 32, 3), BACKGROUNDS["sage"], np.uint8)
    img[4:20, 4:8] = COLORS["green"]  # a 16 x 4 bar: too elongated for any subject shape
    img[4:8, 4:20] = COLORS["green"]  # an L
    found = detect(img)
    assert [(d.color, d.shape) for d in found] == [("green", None)]
    assert has_color(img, "green") and not has_color(img, "red")
    assert not fidelity(img, Subject("green", "square", "solid"))
