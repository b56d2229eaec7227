"""The shipped toy DreamO as a regression test of the method: sampled on held-out glyphs it must copy them (cell
accuracy far above chance, each identity at its captioned place). A change that breaks any DreamO code path —
the condition embedding, the position ids or a reference's box, packing, the LoRA layout of the export, the
placeholders — breaks the copy even where the numerical parity tests still pass. Seconds on a CPU."""

from __future__ import annotations

import numpy as np
import pytest

from training.toy.constants import TOY_DIR
from training.toy.datasets import eval_cases
from training.toy.evaluation import evaluate, load_exported_model, routing_mass


@pytest.fixture(scope="module")
def model():
    return load_exported_model(TOY_DIR / "base", TOY_DIR / "runs" / "placed_route_s0.safetensors")


def test_shipped_toy_copies_held_out_glyphs(model):
    single, pairs = eval_cases(16, 1, seed=4242), eval_cases(8, 2, seed=4243)
    scores = evaluate(model, single, pairs, placed=True, modes=("refs", "text_only"))
    refs, text = scores["refs"], scores["text_only"]
    assert refs.mean("accuracy") >= 0.8, refs.values["accuracy"]
    assert refs.mean("retrieval") >= 0.8 and refs.mean("binding") >= 0.6
    assert text.mean("accuracy") < 0.35  # without the references the identity is not there (chance about 1/6)
    assert abs(text.mean("accuracy") - text.mean("chance_accuracy")) < 0.15


def test_the_box_and_the_dreamo_file_both_matter(model):
    """Break one DreamO part at a time at sampling: each costs most of the copy. (Zeroing the condition-embedding
    tables or the placeholder rows costs only 0.01-0.05 here: with boxes, the position ids do the routing — see
    training/README.md.)"""
    single = eval_cases(12, 1, seed=4244)
    good = evaluate(model, single, [], placed=True)["refs"].mean("accuracy")
    diagonal = evaluate(model, single, [], placed=False)["refs"].mean("accuracy")  # ids not in the box
    plain = load_exported_model(TOY_DIR / "base", None)  # the base without the DreamO file (LoRA, tables, rows)
    no_file = evaluate(plain, single, [], placed=True)["refs"].mean("accuracy")
    assert good >= 0.8 and diagonal < good - 0.2 and no_file < good - 0.3, (good, diagonal, no_file)


def test_routing_mass_is_inside_the_own_glyph(model):
    pairs = eval_cases(8, 2, seed=4245)
    m = routing_mass(model, pairs, placed=True)
    assert np.allclose(m.chance, 16 / 64)  # a 4 x 4 glyph of 8 x 8 tokens
    assert m.mass.mean() > 2 * m.chance.mean()
