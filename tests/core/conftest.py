"""Shared fixture: a tiny random diffusers FLUX transformer (hidden 32, 2 double + 2 single blocks)."""

import pytest
import torch


def make_tiny_flux(seed: int = 0):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=[4, 6, 6],
    )
    return model.eval()


@pytest.fixture
def tiny_flux():
    return make_tiny_flux()
