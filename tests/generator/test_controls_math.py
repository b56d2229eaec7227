"""Beyond-the-paper controls: strength bias, schedule, placement ids, routing maps — against independent computations."""

import math

import pytest
import torch

from dreamo_core.conditioning.embeddings import ConditionEmbeddings
from dreamo_core.conditioning.placement import Box, placed_reference_ids
from dreamo_core.conditioning.position_ids import reference_position_ids
from dreamo_core.conditioning.reference_strength import (
    MASKED,
    ReferenceControl,
    batched_key_bias,
    check_percent_range,
    reference_key_bias,
    strength_to_bias,
)
from dreamo_core.conditioning.token_layout import reference_spans
from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward
from dreamo_core.generator.tiny import flux_transformer
from dreamo_core.routing.response_maps import joint_attention_responses


def test_bias_layout_and_values():
    bias = reference_key_bias(text_tokens=3, target_tokens=4, ref_tokens=[2, 3], weights=[2.0, 0.0])
    assert bias.tolist() == pytest.approx([0.0] * 7 + [math.log(2.0)] * 2 + [MASKED] * 3)
    with pytest.raises(ValueError, match="strength must be a finite number >= 0"):
        strength_to_bias(-0.5)
    with pytest.raises(ValueError, match="2 references but 1 strengths"):
        reference_key_bias(1, 1, [1, 1], [1.0])


def test_batch_items_get_their_own_key_bias():
    """Per batch item its own strengths and step ranges (two regions batched together), zeros for an item without
    DreamO references; written out by hand at sigma 0.5."""
    weak, late = ReferenceControl(0.5), ReferenceControl(2.0, sigma_start=0.4, sigma_end=0.0)
    got = batched_key_bias([(weak,), None, (late,)], torch.tensor([0.5]), 1, 2, [2], torch.float32, "cpu")
    assert got.shape == (3, 1, 1, 5)
    assert got[0, 0, 0].tolist() == pytest.approx([0.0] * 3 + [math.log(0.5)] * 2)
    assert got[1, 0, 0].tolist() == [0.0] * 5
    assert got[2, 0, 0].tolist() == pytest.approx([0.0] * 3 + [MASKED] * 2)  # 0.5 is above its range: off


@pytest.fixture
def tiny_flux():
    return flux_transformer(0, num_layers=2, num_single_layers=2)


@torch.no_grad()
def blockwise_forward(model, hidden_in, rows, ids, inp):
    """FLUX forward written out block by block on given tokens (B, L, 64), embedding rows (L, D) and ids (L, 3)."""
    hidden = model.x_embedder(hidden_in) + rows[None]
    temb = model.time_text_embed(inp["sigma"] * 1000, inp["guidance"] * 1000, inp["pooled"])
    txt = model.context_embedder(inp["prompt_embeds"])
    rope = model.pos_embed(torch.cat([torch.zeros(inp["prompt_embeds"].shape[1], 3), ids]))
    for block in [*model.transformer_blocks, *model.single_transformer_blocks]:
        txt, hidden = block(hidden_states=hidden, encoder_hidden_states=txt, temb=temb, image_rotary_emb=rope)
    return model.proj_out(model.norm_out(hidden, temb))


def test_strength_w_equals_the_reference_seen_w_times(tiny_flux):
    """Independent oracle of weighted reference attention: strength 2 on a reference == the same reference's tokens
    present twice (same ids, same embedding), so every query sees each of its keys twice; strength 0 == a forward
    in which the target never sees the reference. Both through the real generator forward."""
    g = torch.Generator().manual_seed(4)
    inp = dict(latents=torch.randn(1, 6, 64, generator=g), sigma=torch.full((1,), 0.6),
               guidance=torch.full((1,), 3.5), pooled=torch.randn(1, 32, generator=g),
               prompt_embeds=torch.randn(1, 5, 32, generator=g))
    tab = ConditionEmbeddings(torch.randn(2, 32, generator=g), torch.randn(10, 32, generator=g))
    ref = ReferenceTokens(torch.randn(1, 4, 64, generator=g), (2, 2), 3)
    args = (inp["latents"], (2, 3), [ref], inp["sigma"], inp["guidance"], inp["pooled"], inp["prompt_embeds"], tab)
    doubled = dreamo_transformer_forward(tiny_flux, *args, strengths=[2.0])
    ids = torch.tensor([[0.0, r, c] for r in range(2) for c in range(3)] + [[0.0, 2 + r, 3 + c] for r in range(2) for c in range(2)])
    ids2 = torch.cat([ids, ids[6:]])
    rows = torch.cat([tab.task[1].expand(6, -1), (tab.task[0] + tab.idx[3]).expand(8, -1)])
    twice = blockwise_forward(tiny_flux, torch.cat([inp["latents"], ref.tokens, ref.tokens], 1), rows, ids2, inp)
    assert torch.allclose(doubled, twice[:, :6], atol=2e-5)
    plain = dreamo_transformer_forward(tiny_flux, *args)
    assert (plain - doubled).abs().max() > 1e-3  # the strength really acts
    muted = dreamo_transformer_forward(tiny_flux, *args, strengths=[0.0])
    no_ref = dreamo_transformer_forward(tiny_flux, inp["latents"], (2, 3), [], *args[3:])
    assert torch.allclose(muted, no_ref, atol=1e-6)
    boxed = ReferenceTokens(ref.tokens, (2, 2), 3, Box(0.0, 0.0, 1.0, 1.0))  # placed over the whole 2x3 target
    # token centres to box centres: rows 2 -> 2 (scale 1), cols 2 -> 3 (scale 3/2): (c + 0.5) * 1.5 - 0.5
    placed = torch.tensor([[0.0, 0.0, 0.25], [0.0, 0.0, 1.75], [0.0, 1.0, 0.25], [0.0, 1.0, 1.75]])
    in_box = blockwise_forward(tiny_flux, torch.cat([inp["latents"], ref.tokens], 1), rows[:10],
                               torch.cat([ids[:6], placed]), inp)
    got = dreamo_transformer_forward(tiny_flux, inp["latents"], (2, 3), [boxed], *args[3:])
    assert torch.allclose(got, in_box[:, :6], atol=2e-5)


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


def test_joint_attention_responses_equal_mean_of_full_map():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 20, 8), torch.randn(2, 3, 20, 8)
    img, r1, r2 = slice(4, 12), slice(12, 15), slice(15, 20)
    raw = joint_attention_responses(q, k, [r1, r2], img, mode="logits")
    soft = joint_attention_responses(q, k, [r1, r2], img, mode="softmax")
    for i, sl in enumerate((r1, r2)):
        full = torch.einsum("bhqd,bhkd->bhqk", q[:, :, sl], k[:, :, img]) / math.sqrt(8)  # every query-key pair
        assert torch.allclose(raw[:, i], full.mean(dim=(1, 2)), atol=1e-5)
        # softmax over the image keys, averaged, times the number of image tokens (uniform attention -> 1)
        assert torch.allclose(soft[:, i], full.softmax(-1).mean(dim=(1, 2)) * 8, atol=1e-5)


def test_spans_and_placed_ids_literal_tables():
    assert reference_spans(6, [4, 2, 3]) == [(6, 10), (10, 12), (12, 15)]
    ids = reference_position_ids((2, 2), [(1, 2), (1, 1)], [None, Box(0.5, 0.5, 0.5, 0.5)])
    assert ids.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1],  # target
                            [0, 2, 2], [0, 2, 3],  # ref 1: DreamO's diagonal, starting at (2, 2)
                            [0, 1, 1]]  # ref 2: one token placed in the bottom-right quarter: its centre, (1, 1)
    bf16 = reference_position_ids((1, 258), [(1, 3)], dtype=torch.bfloat16)
    assert bf16[258:, 2].tolist() == [258.0, 260.0, 260.0]  # bf16 spacing is 2 above 256: 259 ties to even 260
