"""The toy's preference demonstration (``training.toy.preference``): its pair scorer and its background measure,
against scenes and masks built by hand."""

from __future__ import annotations

import numpy as np
import torch

from training.toy.constants import CELL, GLYPH_NATIVE, NATIVE, UPSCALE
from training.toy.datasets import random_case
from training.toy.preference import background_change, glyph_box_px, prompt_scorer, prompts_of, score
from training.toy.world import HELD_OUT, upscale


def file_image(native: np.ndarray) -> torch.Tensor:
    """(NATIVE, NATIVE, 3) uint8 -> the (128, 128, 3) float image a sampler returns."""
    return torch.from_numpy(upscale(native).astype(np.float32) / 255.0)


def test_score_is_the_cells_right_and_punishes_a_swap() -> None:
    rng = np.random.default_rng(5)
    one = random_case(rng, [HELD_OUT[0]])
    assert score(one, file_image(one.scene.image)) == 1.0
    wrong = one.scene.image.copy()
    r, c = one.scene.places[0]
    y, x = r * CELL, c * CELL
    colour = wrong[y, x].copy()
    wrong[y:y + CELL, x:x + CELL] = 255 - colour  # one cell of 16 in another colour
    assert score(one, file_image(wrong)) == 15 / 16
    two = random_case(rng, [HELD_OUT[1], HELD_OUT[2]])
    assert score(two, file_image(two.scene.image)) == 1.0
    swapped = two.scene.image.copy()
    (r0, c0), (r1, c1) = two.scene.places
    a = swapped[r0 * CELL:r0 * CELL + GLYPH_NATIVE, c0 * CELL:c0 * CELL + GLYPH_NATIVE].copy()
    swapped[r0 * CELL:r0 * CELL + GLYPH_NATIVE, c0 * CELL:c0 * CELL + GLYPH_NATIVE] = \
        swapped[r1 * CELL:r1 * CELL + GLYPH_NATIVE, c1 * CELL:c1 * CELL + GLYPH_NATIVE]
    swapped[r1 * CELL:r1 * CELL + GLYPH_NATIVE, c1 * CELL:c1 * CELL + GLYPH_NATIVE] = a
    assert score(two, file_image(swapped)) < 0.5


def test_background_change_counts_only_outside_the_dilated_glyph_box() -> None:
    rng = np.random.default_rng(6)
    cases = [random_case(rng, [HELD_OUT[3]]) for _ in range(3)]
    before = np.zeros((3, NATIVE, NATIVE, 3))
    inside = before.copy()
    for i, case in enumerate(cases):  # change exactly the glyph's native box: inside M
        x0, y0, x1, y1 = (v // UPSCALE for v in glyph_box_px(case))
        assert (x1 - x0, y1 - y0) == (GLYPH_NATIVE, GLYPH_NATIVE)
        inside[i, y0:y1, x0:x1] = 0.7
    assert np.allclose(background_change(before, inside, cases), 0.0)
    everywhere = before + 0.25
    assert np.allclose(background_change(before, everywhere, cases), 0.25)
    corner = before.copy()
    corner[:, 0, 0] = 1.0  # one pixel, outside the box unless the glyph sits at the top-left place
    got = background_change(before, corner, cases)
    for g, case in zip(got, cases):
        x0, y0, _, _ = (v // UPSCALE for v in glyph_box_px(case))
        assert (g == 0.0) == (x0 == 0 and y0 == 0), (g, case.scene.places)


def test_each_prompt_is_scored_against_its_own_glyph_even_when_captions_repeat(tmp_path) -> None:
    """Captions name places, not glyphs: two cases with one caption and different glyphs must not share a score."""
    rng = np.random.default_rng(7)
    a = random_case(rng, [HELD_OUT[4]])
    b = random_case(np.random.default_rng(7), [HELD_OUT[5]])  # same draws: same place, background and caption
    assert a.prompt() == b.prompt() and a.glyphs != b.glyphs
    prompts = prompts_of([a, b], tmp_path)
    scorer = prompt_scorer(prompts, [a, b])
    assert scorer(prompts[0], file_image(a.scene.image)) == 1.0
    assert scorer(prompts[1], file_image(b.scene.image)) == 1.0
    assert scorer(prompts[1], file_image(a.scene.image)) < 1.0  # a's glyph is wrong for b
