"""dreamo_core.preference (Flow-DPO, localized, and the region's box) against the formula written out by hand with
Python floats, and its invariants: θ = reference gives exactly log 2 and accuracy 0.5, an all-ones region equals the
unlocalized loss, swapping preferred and rejected flips the margin."""

from __future__ import annotations

import math

import pytest
import torch

from dreamo_core.preference.flow_dpo import flow_dpo_loss, token_errors
from dreamo_core.preference.regions import box_mask, dilated_box


def errors(seed: int, b: int = 3, n: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, n, generator=g) for _ in range(4)]


def by_hand(ew, el, rw, rl, beta, region=None, anchor_weight=0.0) -> dict[str, float]:
    """The loss written out per pair and token with Python floats (no tensor ops)."""
    b, n = len(ew), len(ew[0])
    m = region if region is not None else [[1.0] * n for _ in range(b)]
    margins, dpo, anchors = [], 0.0, []
    for i in range(b):
        wsum = sum(m[i])
        e_w = sum(m[i][k] * (ew[i][k] - rw[i][k]) for k in range(n)) / wsum
        e_l = sum(m[i][k] * (el[i][k] - rl[i][k]) for k in range(n)) / wsum
        margin = -beta / 2 * (e_w - e_l)
        margins.append(margin)
        dpo += -math.log(1.0 / (1.0 + math.exp(-margin))) / b
        out = [1.0 - x for x in m[i]]
        anchors.append(sum(o * e for o, e in zip(out, ew[i])) / sum(out) if region is not None and sum(out) else 0.0)
    acc = sum(1.0 if x > 0 else 0.5 if x == 0 else 0.0 for x in margins) / b
    anchor = sum(anchors) / b
    return {"loss": dpo + anchor_weight * anchor, "dpo": dpo, "margin": sum(margins) / b, "accuracy": acc,
            "anchor": anchor}


def check(terms, want: dict[str, float]) -> None:
    for k, v in want.items():
        assert getattr(terms, k).item() == pytest.approx(v, rel=1e-5, abs=1e-6), (k, getattr(terms, k), v)


def test_loss_on_hand_made_tensors_equals_the_formula() -> None:
    ew, el, rw, rl = errors(0)
    check(flow_dpo_loss(ew, el, rw, rl, beta=7.0), by_hand(ew.tolist(), el.tolist(), rw.tolist(), rl.tolist(), 7.0))
    region = torch.tensor([[1, 1, 0.5, 0, 0], [0, 1, 1, 1, 0], [0.25, 0, 0, 0, 1.0]])
    t = flow_dpo_loss(ew, el, rw, rl, beta=7.0, region=region, anchor_weight=0.3)
    check(t, by_hand(ew.tolist(), el.tolist(), rw.tolist(), rl.tolist(), 7.0, region.tolist(), 0.3))
    assert t.anchor.item() > 0 and t.loss.item() != pytest.approx(t.dpo.item())  # the anchor counts


def test_token_errors_average_the_channels() -> None:
    pred = torch.arange(24.0).reshape(1, 2, 12)
    target = torch.zeros(1, 2, 12)
    want = [sum(x * x for x in range(12)) / 12, sum(x * x for x in range(12, 24)) / 12]
    assert token_errors(pred, target).tolist() == [pytest.approx(want)]


def test_model_equal_to_reference_gives_log_2_and_accuracy_one_half() -> None:
    ew, el, _, _ = errors(1)
    t = flow_dpo_loss(ew, el, ew.clone(), el.clone(), beta=5000.0)
    assert t.dpo.item() == pytest.approx(math.log(2), abs=1e-7) and t.margin.item() == 0.0
    assert t.accuracy.item() == 0.5  # every pair a tie: one half each, by convention (as diffusers)


def test_all_ones_region_equals_the_unlocalized_loss() -> None:
    ew, el, rw, rl = errors(2)
    plain = flow_dpo_loss(ew, el, rw, rl, beta=11.0)
    ones = flow_dpo_loss(ew, el, rw, rl, beta=11.0, region=torch.ones_like(ew), anchor_weight=2.0)
    for k in ("loss", "dpo", "margin", "accuracy"):
        assert getattr(ones, k).item() == pytest.approx(getattr(plain, k).item(), rel=1e-6), k
    assert ones.anchor.item() == 0.0  # no outside: no anchor


def test_swapping_preferred_and_rejected_flips_the_margin() -> None:
    ew, el, rw, rl = errors(3, b=8)
    region = (torch.rand(8, 5, generator=torch.Generator().manual_seed(9)) > 0.3).float() + 1e-3
    a = flow_dpo_loss(ew, el, rw, rl, beta=3.0, region=region)
    b = flow_dpo_loss(el, ew, rl, rw, beta=3.0, region=region)
    assert torch.allclose(b.margins, -a.margins) and (a.margins != 0).all()
    assert b.accuracy.item() == pytest.approx(1.0 - a.accuracy.item())
    # -log σ(m) - (-log σ(-m)) = -m, per pair
    assert (a.dpo - b.dpo).item() == pytest.approx(-a.margins.mean().item(), rel=1e-5)


def test_gradient_reaches_only_the_trained_models_errors() -> None:
    ew, el, rw, rl = (x.requires_grad_() for x in errors(4))
    flow_dpo_loss(ew, el, rw, rl, beta=2.0).loss.backward()
    assert ew.grad is not None and el.grad is not None and rw.grad is None and rl.grad is None
    # lower the preferred error / raise the rejected one: the loss falls
    assert (ew.grad > 0).all() and (el.grad < 0).all()


def test_bad_inputs_are_refused() -> None:
    ew, el, rw, rl = errors(5)
    with pytest.raises(ValueError, match="beta must be > 0"):
        flow_dpo_loss(ew, el, rw, rl, beta=0.0)
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        flow_dpo_loss(ew, el[:, :3], rw, rl, beta=1.0)
    with pytest.raises(ValueError, match="dilation must be >= 1"):
        dilated_box((0, 0, 4, 4), 0.5, 10, 10)


def test_dilated_box_enlarges_about_the_centre_and_clips() -> None:
    assert dilated_box((10, 20, 30, 40), 1.0, 64, 64) == (10, 20, 30, 40)
    assert dilated_box((10, 20, 30, 40), 1.5, 64, 64) == (5, 15, 35, 45)  # 20 x 20 -> 30 x 30 about (20, 30)
    assert dilated_box((10, 20, 31, 40), 1.2, 64, 64) == (7, 18, 34, 42)  # x 7.9..33.1 -> whole pixels outward
    assert dilated_box((0, 50, 20, 64), 2.0, 64, 64) == (0, 43, 30, 64)  # clipped at the image's edges
    m = box_mask((1, 2, 4, 3), 5, 4)
    assert m.shape == (4, 5, 1) and m.sum().item() == 3 and m[2, 1:4, 0].tolist() == [1.0, 1.0, 1.0]
