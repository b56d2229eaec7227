"""pack/unpack: round trip, equality with diffusers' FluxPipeline._pack_latents and with an explicit loop."""

import pytest
import torch

from dreamo_core.conditioning.packing import (
    denormalize_latents,
    normalize_latents,
    pack_latents,
    unpack_latents,
)


def pack_by_loop(z: torch.Tensor) -> torch.Tensor:
    """Token (i, j) = channels c-major, then the 2x2 patch row-major: z[b, c, 2i + dy, 2j + dx]."""
    b, c, h, w = z.shape
    out = torch.empty(b, (h // 2) * (w // 2), c * 4)
    for i in range(h // 2):
        for j in range(w // 2):
            feats = [z[:, ch, 2 * i + dy, 2 * j + dx] for ch in range(c) for dy in (0, 1) for dx in (0, 1)]
            out[:, i * (w // 2) + j] = torch.stack(feats, dim=-1)
    return out


def test_pack_matches_loop_and_round_trips():
    z = torch.randn(2, 3, 4, 6)
    tokens = pack_latents(z)
    assert tokens.shape == (2, 6, 12)
    torch.testing.assert_close(tokens, pack_by_loop(z), rtol=0, atol=0)
    torch.testing.assert_close(unpack_latents(tokens, 2, 3), z, rtol=0, atol=0)


def test_pack_matches_diffusers_pack_latents():
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline

    z = torch.randn(1, 16, 8, 12)
    expected = FluxPipeline._pack_latents(z, 1, 16, 8, 12)
    torch.testing.assert_close(pack_latents(z), expected, rtol=0, atol=0)
    torch.testing.assert_close(unpack_latents(expected, 4, 6), z, rtol=0, atol=0)


def test_first_token_hand_written():
    z = torch.arange(2 * 2 * 4, dtype=torch.float32).reshape(1, 2, 2, 4)  # channel 0: 0..7, channel 1: 8..15
    # token 0 covers rows 0-1, cols 0-1: ch0 [0, 1, 4, 5], ch1 [8, 9, 12, 13]
    assert pack_latents(z)[0, 0].tolist() == [0, 1, 4, 5, 8, 9, 12, 13]
    assert pack_latents(z)[0, 1].tolist() == [2, 3, 6, 7, 10, 11, 14, 15]


@pytest.mark.parametrize("shape", [(1, 16, 5, 4), (1, 16, 4, 7)])
def test_pack_rejects_odd_sizes(shape):
    with pytest.raises(ValueError, match=rf"latent size {shape[2]}x{shape[3]} is not a multiple of the patch size 2"):
        pack_latents(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(16, 4, 4), (1, 1, 16, 4, 4)])
def test_pack_rejects_wrong_ndim(shape):
    with pytest.raises(ValueError, match=r"pack_latents expects \(B, C, H, W\) latents, got shape"):
        pack_latents(torch.zeros(shape))


def test_unpack_rejects_wrong_token_count_and_ndim():
    with pytest.raises(ValueError, match=r"expected \(B, 6, C\) tokens for a 2x3 grid, got \(1, 5, 64\)"):
        unpack_latents(torch.zeros(1, 5, 64), 2, 3)
    with pytest.raises(ValueError, match=r"expected \(B, 6, C\) tokens"):
        unpack_latents(torch.zeros(6, 64), 2, 3)


def test_unpack_rejects_channels_not_divisible_by_patch_area():
    with pytest.raises(ValueError, match=r"tokens have 63 channels, expected a multiple of 4"):
        unpack_latents(torch.zeros(1, 6, 63), 2, 3)


def test_latent_normalisation_is_flux_formula_and_inverts():
    z = torch.tensor([0.1159, 1.1159, -2.0])
    assert torch.allclose(normalize_latents(z, 0.1159, 0.3611), torch.tensor([0.0, 0.3611, (-2.0 - 0.1159) * 0.3611]))
    torch.testing.assert_close(denormalize_latents(normalize_latents(z, 0.1159, 0.3611), 0.1159, 0.3611), z)
