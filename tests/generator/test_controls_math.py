"""Beyond-the-paper controls: strength bias, schedule, placement ids, routing maps — against direct computations."""

import math

import pytest
import torch

from dreamo_core.conditioning.placement import Box, placed_reference_ids
from dreamo_core.conditioning.reference_strength import (
    MASKED,
    check_percent_range,
    reference_key_bias,
    strength_to_bias,
)
from dreamo_core.routing.response_maps import reference_response


def test_bias_layout_and_values():
    bias = reference_key_bias(text_tokens=3, target_tokens=4, ref_tokens=[2, 3], weights=[2.0, 0.0])
    assert bias.tolist() == pytest.approx([0.0] * 7 + [math.log(2.0)] * 2 + [MASKED] * 3)
    with pytest.raises(ValueError, match="strength must be a finite number >= 0"):
        strength_to_bias(-0.5)
    with pytest.raises(ValueError, match="2 references but 1 strengths"):
        reference_key_bias(1, 1, [1, 1], [1.0])


def test_log_bias_scales_attention_weights_by_w():
    torch.manual_seed(0)
    q, k = torch.randn(5, 8), torch.randn(9, 8)
    logits = q @ k.T / math.sqrt(8)
    w = torch.tensor([1.0] * 6 + [3.0] * 3)
    biased = torch.softmax(logits + torch.log(w), dim=-1)
    direct = torch.exp(logits) * w
    assert torch.allclose(biased, direct / direct.sum(-1, keepdim=True), atol=1e-6)
    masked = torch.softmax(logits + torch.tensor([0.0] * 6 + [MASKED] * 3), dim=-1)
    assert torch.allclose(masked[:, :6], torch.softmax(logits[:, :6], -1), atol=1e-7) and masked[:, 6:].max() == 0


def test_percent_range_check():
    check_percent_range(0.0, 1.0)
    check_percent_range(0.3, 0.3)
    with pytest.raises(ValueError, match="Some Node: need 0 <= start <= end <= 1"):
        check_percent_range(0.8, 0.2, "Some Node")
    with pytest.raises(ValueError, match="start <= end"):
        check_percent_range(-0.1, 0.5)


def test_placement_maps_token_centres_into_the_box():
    # target 8x8 tokens, reference 4x2 tokens placed in the left half (x 0..0.5, full height)
    ids = placed_reference_ids((4, 2), Box(0.0, 0.0, 0.5, 1.0), (8, 8)).reshape(4, 2, 3)
    # rows: box is 8 tokens tall for 4 ref rows -> scale 2, centres at 0.5, 2.5, 4.5, 6.5 (token-centre convention)
    assert ids[:, 0, 1].tolist() == [0.5, 2.5, 4.5, 6.5]
    # cols: box is 4 tokens wide for 2 ref cols -> scale 2, centres 0.5, 2.5
    assert ids[0, :, 2].tolist() == [0.5, 2.5]
    assert (ids[..., 0] == 0).all()
    # identity: a reference the size of the target placed on the whole image gets the target's own ids
    same = placed_reference_ids((8, 8), Box(0, 0, 1, 1), (8, 8))
    assert same[:, 1].tolist() == [float(r) for r in range(8) for _ in range(8)]
    with pytest.raises(ValueError, match="must lie inside the image"):
        Box(0.6, 0.0, 0.5, 1.0)
    assert Box.from_pixels(256, 0, 256, 512, 512, 512) == Box(0.5, 0.0, 0.5, 1.0)


def test_reference_response_equals_mean_of_full_map():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 20, 8), torch.randn(2, 3, 20, 8)
    img, r1, r2 = slice(4, 12), slice(12, 15), slice(15, 20)
    raw = reference_response(q, k, [r1, r2], img, mode="logits")
    soft = reference_response(q, k, [r1, r2], img, mode="softmax")
    for i, sl in enumerate((r1, r2)):
        full = torch.einsum("bhqd,bhkd->bhqk", q[:, :, sl], k[:, :, img]) / math.sqrt(8)  # every query-key pair
        assert torch.allclose(raw[:, i], full.mean(dim=(1, 2)), atol=1e-5)
        # softmax over the image keys, averaged, times the number of image tokens (uniform attention -> 1)
        assert torch.allclose(soft[:, i], full.softmax(-1).mean(dim=(1, 2)) * 8, atol=1e-5)
