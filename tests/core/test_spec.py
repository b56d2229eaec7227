"""DreamOSpec: FLUX.1-dev's numbers checked against the real architecture, validation, every size field round-tripping
through a real transformer."""

import pytest

from dreamo_core.spec import FLUX_DEV, DreamOSpec


def test_flux_dev_spec_matches_the_real_architecture():
    """FLUX_DEV against diffusers' FLUX.1-dev transformer (its default config, built on the meta device): the block
    counts, the width and every derived size DreamO's LoRA shapes depend on."""
    import torch
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(guidance_embeds=True)
    assert DreamOSpec.of_diffusers_config(model.config) == FLUX_DEV
    single = model.single_transformer_blocks[0]
    assert FLUX_DEV.mlp_hidden == single.proj_mlp.out_features
    assert FLUX_DEV.single_proj_in == single.proj_out.in_features  # the single proj_lora's input width
    assert FLUX_DEV.packed_channels == model.x_embedder.in_features
    assert FLUX_DEV.t5_dim == model.context_embedder.in_features


def test_tiny_spec_matches_a_tiny_transformer():
    from dreamo_core.generator.tiny import flux_transformer

    model = flux_transformer(0, device="meta", num_layers=2, num_single_layers=3)
    tiny = DreamOSpec.of_diffusers_config(model.config)
    assert (tiny.num_double_blocks, tiny.num_single_blocks, tiny.hidden_size) == (2, 3, 32)
    assert tiny.single_proj_in == model.single_transformer_blocks[0].proj_out.in_features


def test_every_size_field_round_trips_through_a_real_transformer():
    """At a size unlike FLUX.1-dev's (so no default can stand in for a field): the diffusers transformer built from
    ``diffusers_config()`` reads back as the same spec (a field written but not read, or read from the wrong
    config key, breaks it), its modules have the spec's widths, and ``comfy_flux_params()`` names the same sizes
    in ComfyUI's FluxParams terms."""
    import torch
    from diffusers import FluxTransformer2DModel

    spec = DreamOSpec(hidden_size=96, attention_head_dim=32, num_double_blocks=3, num_single_blocks=2, t5_dim=48,
                      pooled_dim=40, rope_axes=(8, 12, 12), route_blocks=(2,))
    with torch.device("meta"):
        model = FluxTransformer2DModel(**spec.diffusers_config())
    assert DreamOSpec.of_diffusers_config(model.config) == spec
    assert (len(model.transformer_blocks), len(model.single_transformer_blocks)) == (3, 2)
    attn = model.transformer_blocks[0].attn
    assert (attn.heads, attn.to_q.out_features) == (3, 96)
    assert model.context_embedder.in_features == 48
    assert model.time_text_embed.text_embedder.linear_1.in_features == 40
    assert model.pos_embed.axes_dim == [8, 12, 12]
    assert spec.comfy_flux_params() == dict(hidden_size=96, num_heads=3, depth=3, depth_single_blocks=2,
                                            context_in_dim=48, vec_in_dim=40, axes_dim=[8, 12, 12])


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


def test_flux_dev_facts_build_the_real_model_and_schedule():
    """The FLUX.1-dev facts other rooms read (head width, pooled width, RoPE axes, schedule shifts) against diffusers:
    the transformer built from ``diffusers_config()`` is the default FLUX.1-dev one, and ``time_shift_mu`` is the
    scheduler's own mu (diffusers' ``calculate_shift`` in the Flux pipeline) at several token counts."""
    import torch
    from diffusers import FluxTransformer2DModel
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    with torch.device("meta"):
        ours = FluxTransformer2DModel(**FLUX_DEV.diffusers_config())
        theirs = FluxTransformer2DModel(guidance_embeds=True)
    def sizes(config):
        return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in config.items() if not k.startswith("_")}

    assert sizes(ours.config) == sizes(theirs.config)
    assert FLUX_DEV.num_heads * FLUX_DEV.attention_head_dim == FLUX_DEV.hidden_size
    for tokens in (256, 1024, 4096, 6000):
        assert FLUX_DEV.time_shift_mu(tokens) == pytest.approx(calculate_shift(tokens), abs=1e-12)
    assert FLUX_DEV.route_layers == ("transformer_blocks.2", "transformer_blocks.8", "transformer_blocks.14")
