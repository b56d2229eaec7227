"""The FLOPs floor against a direct count over FLUX.1-dev's layer shapes and torch's FlopCounterMode."""

import pytest
import torch

from bench.flops import card_bf16_peak, excess_percent, floor_ratio, forward_flops, peak_share, tokens_for
from dreamo_core.spec import FLUX_DEV


def direct_macs(n_txt: int, n_img: int) -> float:
    d, m = 3072, 12288
    n = n_txt + n_img
    double = (n_txt + n_img) * (3 * d * d + d * d + d * m + m * d) + 2 * n * n * d  # per stream qkv/out/mlp; QK^T + AV
    single = n * (d * (3 * d + m) + (d + m) * d) + 2 * n * n * d  # linear1 (qkv+mlp in), linear2 (attn+mlp -> d)
    embed = n_txt * 4096 * d + n_img * 2 * 64 * d  # context_embedder; x_embedder + proj_out
    return 19 * double + 38 * single + embed


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


def test_forward_flops_equal_torch_flop_counter_on_a_real_forward():
    """Counted MACs of a real diffusers FLUX forward (math attention, so QK^T / AV show up as bmm): the attention
    part is exact, and the linear part differs only by the per-sample embedders / modulations, counted by hand."""
    pytest.importorskip("diffusers")
    from diffusers import FluxTransformer2DModel
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from dreamo_core.spec import DreamOSpec

    d, t5, pooled = 128, 96, 48
    model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=2, num_single_layers=3,
                                   attention_head_dim=32, num_attention_heads=4, joint_attention_dim=t5,
                                   pooled_projection_dim=pooled, guidance_embeds=True, axes_dims_rope=[8, 12, 12])
    spec = DreamOSpec(hidden_size=d, num_double_blocks=2, num_single_blocks=3, t5_dim=t5)
    # timestep + guidance embedders (256->D->D each), pooled text (48->D->D), AdaLN: 2 streams x 6D per double
    # block, 3D per single block, 2D for norm_out -- all on one vector per sample
    per_sample = 2 * (256 * d + d * d) + (pooled * d + d * d) + 2 * 2 * 6 * d * d + 3 * 3 * d * d + 2 * d * d
    for n_txt, n_img in [(16, 64), (32, 256), (8, 400)]:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(hidden_states=torch.randn(1, n_img, 64), encoder_hidden_states=torch.randn(1, n_txt, t5),
                  pooled_projections=torch.randn(1, pooled), timestep=torch.tensor([0.5]),
                  guidance=torch.tensor([3.5]), img_ids=torch.zeros(n_img, 3), txt_ids=torch.zeros(n_txt, 3))
        counted = {str(k): v / 2 for k, v in counter.get_flop_counts()["Global"].items()}  # FLOPs -> MACs
        ours = forward_flops(n_img, n_txt, spec)
        assert counted["aten.bmm"] == ours.attention
        assert counted["aten.addmm"] == ours.linear + per_sample


@pytest.mark.parametrize(("name", "tflops"), [("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756),
                                              ("NVIDIA H100 NVL", 835), ("NVIDIA H200", 989), ("NVIDIA H200 NVL", 835),
                                              ("NVIDIA A100-SXM4-80GB", 312), ("Radeon", None)])
def test_card_peaks_by_device_name(name, tflops):
    peak = card_bf16_peak(name)
    assert (peak is None if tflops is None else peak == tflops * 1e12)


def test_peak_share_of_a_step():
    macs = direct_macs(512, 4096 + 2 * 1024)  # the GPU suite's step
    share = peak_share(macs, 0.25, 989e12)
    assert share == pytest.approx(2 * macs / 0.25 / 989e12) and 0.4 < share < 0.5  # ~118 TFLOP in 0.25 s
    assert peak_share(macs, 0.25, None) is None
