"""DreamOSpec: the released FLUX.1-dev numbers, validation with clear messages, immutability."""

import dataclasses

import pytest

from dreamo_core.spec import FLUX_DEV, DreamOSpec


def test_flux_dev_derived_sizes():
    # FLUX.1-dev: width 3072, MLP 4x, 16 latent channels, 2x2 patches, VAE /8
    assert FLUX_DEV.hidden_size == 3072
    assert FLUX_DEV.mlp_hidden == 12288
    assert FLUX_DEV.single_proj_in == 15360  # DreamO's single proj_lora input width (spec §5.2)
    assert FLUX_DEV.packed_channels == 64
    assert FLUX_DEV.token_pixels == 16
    assert (FLUX_DEV.num_double_blocks, FLUX_DEV.num_single_blocks) == (19, 38)
    assert (FLUX_DEV.num_task_rows, FLUX_DEV.num_idx_rows, FLUX_DEV.max_refs) == (2, 10, 9)
    assert (FLUX_DEV.t5_dim, FLUX_DEV.t5_placeholder_rows) == (4096, 10)
    assert (FLUX_DEV.latent_shift, FLUX_DEV.latent_scale) == (0.1159, 0.3611)


def test_tiny_spec_derived_sizes():
    tiny = DreamOSpec(hidden_size=32, num_double_blocks=2, num_single_blocks=2, t5_dim=16)
    assert (tiny.mlp_hidden, tiny.single_proj_in) == (128, 160)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FLUX_DEV.hidden_size = 64  # type: ignore[misc]


def test_max_refs_needs_idx_rows():
    with pytest.raises(ValueError, match=r"max_refs=10 .*num_idx_rows=10 only has rows 0\.\.9"):
        DreamOSpec(max_refs=10)
    assert DreamOSpec(max_refs=3, num_idx_rows=4).max_refs == 3


def test_task_rows_at_least_two():
    with pytest.raises(ValueError, match=r"num_task_rows must be >= 2 .*got 1"):
        DreamOSpec(num_task_rows=1)


@pytest.mark.parametrize(
    "name",
    ["hidden_size", "num_double_blocks", "num_single_blocks", "num_idx_rows", "max_refs", "t5_dim",
     "t5_placeholder_rows", "latent_channels", "patch_size", "vae_downscale"],
)
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_sizes_rejected(name, value):
    with pytest.raises(ValueError, match=rf"DreamOSpec\.{name} must be positive, got {value}"):
        DreamOSpec(**{name: value})


@pytest.mark.parametrize("ratio", [0.0, -4.0, 4.01])
def test_mlp_ratio_must_give_integer_width(ratio):
    with pytest.raises(ValueError, match=r"mlp_ratio must give an integer MLP width"):
        DreamOSpec(hidden_size=32, mlp_ratio=ratio)
