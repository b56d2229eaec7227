"""The FLOPs floor against a direct count over FLUX.1-dev's layer shapes."""

import pytest

from dreamo_core.flops import excess_percent, floor_ratio, forward_flops, tokens_for
from dreamo_core.spec import FLUX_DEV


def direct_macs(n_txt: int, n_img: int) -> float:
    d, m = 3072, 12288
    n = n_txt + n_img
    double = (n_txt + n_img) * (3 * d * d + d * d + d * m + m * d) + 2 * n * n * d  # per stream qkv/out/mlp; QK^T + AV
    single = n * (d * (3 * d + m) + (d + m) * d) + 2 * n * n * d  # linear1 (qkv+mlp in), linear2 (attn+mlp -> d)
    return 19 * double + 38 * single


@pytest.mark.parametrize("n_img", [1024, 4096, 4096 + 2 * 1024])
def test_forward_flops_equal_a_direct_count(n_img):
    assert forward_flops(n_img, 512, FLUX_DEV).total == pytest.approx(direct_macs(512, n_img), rel=1e-12)


def test_floor_ratio_spec_example():
    # 1024² output + two 512² refs: 512 + 4096 + 2048 tokens vs 512 + 4096 (spec §2.5)
    r = floor_ratio(tokens_for(1024, 1024), [tokens_for(512, 512)] * 2)
    assert r == pytest.approx(direct_macs(512, 6144) / direct_macs(512, 4096))
    assert 1.4 < r < 1.7  # attention makes it super-linear: tokens grow 6656/4608 = 1.44x
    assert floor_ratio(4096, []) == 1.0
    assert excess_percent(1.5, 1.5) == 0.0 and excess_percent(1.575, 1.5) == pytest.approx(5.0)
