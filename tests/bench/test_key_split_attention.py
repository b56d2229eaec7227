"""bench.key_split_attention: the mask-free strength (flash calls per key group merged by log-sum-exp) equals SDPA
with the strength bias as its mask, the one the nodes and the generator build."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.key_split_attention import key_groups, key_split_attention
from dreamo_core.conditioning.reference_strength import strength_bias

TEXT, TARGET, REFS = 8, 16, [4, 4, 8]


def test_groups_of_equal_weight_are_merged():
    assert key_groups(TEXT, TARGET, REFS, [1.0, 1.0, 1.0]) == [(0, 40, 1.0)]
    assert key_groups(TEXT, TARGET, REFS, [0.5, 0.5, 1.0]) == [(0, 24, 1.0), (24, 32, 0.5), (32, 40, 1.0)]
    assert key_groups(TEXT, TARGET, REFS, [1.0, 2.0, 0.0]) == [(0, 28, 1.0), (28, 32, 2.0), (32, 40, 0.0)]


@pytest.mark.parametrize("strengths", [[0.5, 0.5, 1.0], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0], [0.25, 3.0, 0.7]])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_split_equals_the_masked_attention(strengths, dtype):
    g = torch.Generator().manual_seed(0)
    n = TEXT + TARGET + sum(REFS)
    q, k, v = (torch.randn(2, 3, n, 16, generator=g).to(dtype) for _ in range(3))
    bias = strength_bias(strengths, TEXT, TARGET, REFS, 2, dtype, "cpu")
    want = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias.float())
    got = key_split_attention(q, k, v, key_groups(TEXT, TARGET, REFS, strengths))
    assert got.dtype == dtype and got.shape == want.shape
    assert (got.float() - want).abs().max() <= (1e-6 if dtype == torch.float32 else 2e-2)
    plain = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    if strengths != [1.0, 1.0, 1.0]:
        assert (plain - want).abs().max() > 1e-2  # the check can fail: the strengths change the output
