"""The glyph world, its datasets and its metrics, each against an independent computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamo_core.conditioning.placement import placed_reference_ids
from training.data import read_metadata
from training.toy.codec import ToyCodec
from training.toy.constants import (
    CELL,
    GLYPH_CELLS,
    HELD_OUT_GLYPHS,
    NATIVE,
    REF_SIZE,
    TARGET_SIZE,
    TOKEN_GRID,
)
from training.toy.datasets import eval_cases, training_cases, write_toy_datasets
from training.toy.metrics import (
    BLEND_CELLS,
    cell_accuracy,
    pair_score,
    retrieved,
    seed_interval,
    wilson,
)
from training.toy.world import (
    BACKGROUNDS,
    HELD_OUT,
    PALETTE_RGB,
    PLACES,
    Glyph,
    make_scene,
    place_box,
    random_glyph,
    training_glyph,
)


def test_glyphs_use_two_or_three_colours_each_at_least_once():
    rng = np.random.default_rng(0)
    counts = set()
    for _ in range(200):
        g = random_glyph(rng)
        colours = set(g.cells)
        assert len(g.cells) == GLYPH_CELLS**2 and len(colours) in (2, 3)
        counts.add(len(colours))
        px = g.pixels()
        assert px.shape == (CELL * GLYPH_CELLS,) * 2 + (3,)
        for r in range(GLYPH_CELLS):  # every cell is a CELL x CELL block of its palette colour
            for c in range(GLYPH_CELLS):
                block = px[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL]
                assert (block == PALETTE_RGB[g.grid[r, c]]).all()
    assert counts == {2, 3}


def test_held_out_glyphs_never_reach_training():
    assert len(set(HELD_OUT)) == HELD_OUT_GLYPHS
    seen = {g for n in (1, 2) for case in training_cases(400, n, seed=5) for g in case.glyphs}
    assert len(seen) > 700 and not seen & set(HELD_OUT)

    class Replay:  # an rng whose first glyph draw reproduces HELD_OUT[0]: training_glyph must draw again
        def __init__(self):
            self.inner = np.random.default_rng(0)
            self.first = True

        def __getattr__(self, name):
            return getattr(self.inner, name)

    rng = Replay()
    from training.toy import world

    real = world.random_glyph
    calls = []

    def fake(r):
        calls.append(1)
        return HELD_OUT[0] if len(calls) == 1 else real(r)

    world.random_glyph = fake
    try:
        assert training_glyph(rng) != HELD_OUT[0] and len(calls) == 2
    finally:
        world.random_glyph = real


def test_scene_draws_each_glyph_at_its_place_and_the_box_is_its_tokens():
    rng = np.random.default_rng(1)
    for n in (1, 2):
        scene = make_scene(rng, [random_glyph(rng) for _ in range(n)])
        inside = np.zeros((NATIVE, NATIVE), bool)
        for k, (g, (r, c)) in enumerate(zip(scene.glyphs, scene.places)):
            assert (r, c) in PLACES and (n == 1 or c == (0 if k == 0 else 4))
            assert (scene.image[r * CELL : r * CELL + 16, c * CELL : c * CELL + 16] == g.pixels()).all()
            assert scene.mask(k).sum() == 16 * 16 and scene.mask(k)[r * CELL, c * CELL]
            inside |= scene.mask(k)
            # the placed reference's 4 x 4 ids land exactly on the glyph's target tokens (rows r..r+3, cols c..c+3)
            ids = placed_reference_ids((GLYPH_CELLS, GLYPH_CELLS), place_box((r, c)), TOKEN_GRID)
            want = torch.tensor([[0.0, r + i, c + j] for i in range(GLYPH_CELLS) for j in range(GLYPH_CELLS)])
            assert torch.allclose(ids, want, atol=1e-6)
        assert (scene.image[~inside] == BACKGROUNDS[scene.background]).all()


def test_datasets_rows_boxes_and_captions(tmp_path: Path):
    data = write_toy_datasets(tmp_path, n_single=40, n_multi=200, n_self=4)
    rows = read_metadata(data["multi"], [[TARGET_SIZE, TARGET_SIZE]], REF_SIZE, placement="box")
    assert len(rows) == 200
    lines = [json.loads(x) for x in (data["multi"] / "metadata.jsonl").read_text().splitlines()]
    ref2_first = np.mean([line["caption"].index("[ref#2]") < line["caption"].index("[ref#1]") for line in lines])
    left_is_1 = np.mean([line["references"][0]["box"][0] == 0.0 for line in lines])  # ref#1's box in the left column
    assert 0.4 < ref2_first < 0.6 and 0.4 < left_is_1 < 0.6
    for line, row in zip(lines[:20], rows[:20]):
        assert "glyph" not in line["caption"] and "[ref#" not in line["plain_caption"]
        for ref, parsed in zip(line["references"], row.refs):
            img = np.asarray(Image.open(data["multi"] / ref["image"]).convert("RGB"))
            mask = np.asarray(Image.open(data["multi"] / ref["mask"])) > 127
            assert img.shape == (REF_SIZE, REF_SIZE, 3)
            ys, xs = np.nonzero(mask)  # the box is the mask's footprint, in fractions of the target
            x, y, w, h = ref["box"]
            assert (xs.min(), ys.min(), xs.max() + 1 - xs.min()) == (x * TARGET_SIZE, y * TARGET_SIZE, w * TARGET_SIZE)
            assert parsed.box.w == pytest.approx(w) and parsed.box.h == pytest.approx(h)
    self_rows = read_metadata(data["self"], [[TARGET_SIZE, TARGET_SIZE]], REF_SIZE, placement="box")
    assert all(r.refs[0].box.w == 1.0 for r in self_rows)


def test_codec_is_exact_on_glyph_scenes():
    case = eval_cases(1, 2, seed=3)[0]
    from training.codec import decode_tokens, encode_tokens
    from training.toy.world import downscale, upscale

    pixels = torch.from_numpy(upscale(case.scene.image)[None]).float() / 255.0
    tokens, grid = encode_tokens(ToyCodec(), pixels)
    assert grid == TOKEN_GRID
    back = downscale(decode_tokens(ToyCodec(), tokens, grid)[0].numpy())
    np.testing.assert_allclose(back * 255.0, case.scene.image.astype(np.float64), atol=1e-3)


def image_with(glyphs: list[Glyph], places: list[tuple[int, int]]) -> np.ndarray:
    img = np.full((NATIVE, NATIVE, 3), 150, np.uint8)
    for g, (r, c) in zip(glyphs, places):
        img[r * CELL : r * CELL + 16, c * CELL : c * CELL + 16] = g.pixels()
    return img.astype(np.float64) / 255.0


def test_cell_accuracy_and_retrieval_by_hand():
    g, other = HELD_OUT[0], HELD_OUT[1]
    img = image_with([g], [(2, 2)])
    assert cell_accuracy(img, (2, 2), g) == 1.0 and retrieved(img, (2, 2), g, HELD_OUT)
    # the place matters: a place of background cells (no overlap with the glyph) never matches a glyph's colours
    assert cell_accuracy(image_with([g], [(0, 0)]), (4, 4), g) == 0.0
    wrong = Glyph(tuple((c + 1) % 6 for c in g.cells))  # every cell a different colour
    assert cell_accuracy(image_with([wrong], [(2, 2)]), (2, 2), g) == 0.0
    half = Glyph(g.cells[:8] + other.cells[8:])
    expected = float(np.mean(np.array(half.cells) == np.array(g.cells)))
    assert cell_accuracy(image_with([half], [(2, 2)]), (2, 2), g) == expected
    # a gallery glyph drawn at the place is retrieved as itself, not as the first one
    assert retrieved(image_with([other], [(4, 4)]), (4, 4), other, HELD_OUT)
    assert not retrieved(image_with([other], [(4, 4)]), (4, 4), g, HELD_OUT)


def test_pair_score_binding_swap_and_blend():
    a, b = HELD_OUT[2], HELD_OUT[3]
    places = [(0, 0), (4, 4)]
    right = pair_score(image_with([a, b], places), places, [a, b], HELD_OUT)
    assert right.binding and right.exact and not right.swap and not right.blend
    swapped = pair_score(image_with([b, a], places), places, [a, b], HELD_OUT)
    assert swapped.swap and not swapped.binding
    # blend: copy BLEND_CELLS cells of b into a where they differ
    cells = list(a.cells)
    diff = [i for i in range(16) if a.cells[i] != b.cells[i]][:BLEND_CELLS]
    for i in diff:
        cells[i] = b.cells[i]
    blended = pair_score(image_with([Glyph(tuple(cells)), b], places), places, [a, b], HELD_OUT)
    assert blended.blend and not blended.binding
    empty = pair_score(image_with([], []), places, [a, b], HELD_OUT)  # nothing drawn: no identity, no binding
    assert not empty.binding


def test_intervals_by_hand():
    m, lo, hi = seed_interval([0.8, 0.9, 1.0])
    sd = np.std([0.8, 0.9, 1.0], ddof=1)
    assert m == pytest.approx(0.9) and hi - m == pytest.approx(4.303 * sd / np.sqrt(3))
    assert seed_interval([0.5]) == (0.5, 0.5, 0.5)
    lo, hi = wilson(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)  # the Wilson interval's textbook value for 8 / 10
