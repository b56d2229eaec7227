"""The tiny text encoder's word context (``TinyTextEncoder(context=k)``) and true CFG in the trainer's sampler.

FLUX gives every text token the same RoPE position, so without context a caption reaches the transformer as a bag
of words: ``a red circle at top left and a blue square at bottom right`` and its swap would be the same input.
"""

from __future__ import annotations

import numpy as np
import torch

from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward
from training.config import ModelConfig
from training.model import build_model
from training.sampling import euler_sample, initial_noise, shifted_sigmas
from training.text.tiny_hashed import TinyTextEncoder

CAPTION = "a red circle at top left and a blue square at bottom right"
SWAPPED = "a blue square at top left and a red circle at bottom right"


def by_hand(enc: TinyTextEncoder, caption: str, rows: torch.Tensor) -> np.ndarray:
    """Independent computation: look up each word (or its placeholder row), add mix_k of the k-th previous one."""
    tokens = enc.tokenize([caption])
    table, mix = enc.table.numpy(), enc.mix.numpy()
    ids, slots = tokens.ids[0].numpy(), tokens.slots[0].numpy()
    x = np.stack([rows[s].numpy() if s >= 0 else table[i] for i, s in zip(ids, slots)])
    out = x.copy()
    for t in range(len(x)):
        for k in range(1, enc.context + 1):
            if t - k >= 0:
                out[t] += x[t - k] @ mix[k - 1]
    return out


def test_context_matches_an_independent_computation_and_rows_enter_it():
    enc, rows = TinyTextEncoder(16, 8, 12, context=3, seed=1), torch.randn(10, 16)
    caption = "a [ref#1] at top left on a gray background"
    emb, pooled, slots = enc.encode([caption], rows)
    np.testing.assert_allclose(emb[0].numpy(), by_hand(enc, caption, rows), atol=1e-5)
    # the placeholder row reaches the next `context` tokens and no others; the pooled vector never sees it
    other = rows.clone()
    other[0] += 1.0
    emb2, pooled2, _ = enc.encode([caption], other)
    changed = (emb2[0] - emb[0]).abs().amax(-1) > 1e-6
    p = int((slots[0] == 0).nonzero())
    assert changed.nonzero().flatten().tolist() == list(range(p, p + enc.context + 1))
    assert torch.equal(pooled, pooled2)


def test_without_context_the_swapped_caption_is_the_same_bag_with_context_it_is_not():
    rows = torch.zeros(10, 16)
    bag = TinyTextEncoder(16, 8, 16, context=0)
    a, b = bag.encode([CAPTION], rows)[0][0], bag.encode([SWAPPED], rows)[0][0]
    key = lambda e: sorted(map(tuple, e.round(decimals=5).tolist()))  # noqa: E731 - the multiset of token vectors
    assert key(a) == key(b)  # nothing but word order differs: the transformer (same position for all) sees one input
    ctx = TinyTextEncoder(16, 8, 16, context=5)
    a, b = ctx.encode([CAPTION], rows)[0][0], ctx.encode([SWAPPED], rows)[0][0]
    assert key(a) != key(b)
    assert ctx.identity() != bag.identity()  # text caches keyed by identity never mix the two


def tiny_model() -> torch.nn.Module:
    cfg = ModelConfig(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                      joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 6, 6], lora_rank=4,
                      tiny_text_context=2)
    model = build_model(cfg).eval()
    with torch.no_grad():  # non-zero LoRA B and tables, so the references and DreamO rows change the output
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn_like(p) * 0.2)
    return model


def test_true_cfg_is_the_official_combination_with_a_reference_free_negative_pass():
    model, grid = tiny_model(), (2, 2)
    ref = ReferenceTokens(torch.randn(1, 4, 64), (2, 2), 1)
    captions = ["a [ref#1] at top left"]
    with torch.no_grad():
        one = euler_sample(model, grid, [ref], captions, steps=1, seed=3)
        cfg = euler_sample(model, grid, [ref], captions, steps=1, seed=3, true_cfg=2.5, negative_prompt="blurry")
        # by hand, one Euler step from sigma 1 to 0: z1 = z0 - v, v = v_neg + s (v_pos - v_neg)
        z0, sigma, g = initial_noise(1, grid, 3), torch.ones(1), torch.full((1,), 3.5)
        assert float(shifted_sigmas(1, 4)[0]) == 1.0
        e, p, _ = model.encode_text(captions)
        ne, npool, _ = model.encode_text(["blurry"])
        v_pos = dreamo_transformer_forward(model.transformer, z0, grid, [ref], sigma, g, p, e, model.tables)
        v_neg = dreamo_transformer_forward(model.transformer, z0, grid, [], sigma, g, npool, ne, None)
    torch.testing.assert_close(one, z0 - v_pos, atol=1e-5, rtol=0)
    torch.testing.assert_close(cfg, z0 - (v_neg + 2.5 * (v_pos - v_neg)), atol=1e-5, rtol=0)
    assert (cfg - one).abs().max() > 1e-3
