"""XLabs -> diffusers LoRA names, and merging into a tiny diffusers FLUX: exact deltas, nothing else touched."""

import pytest
import torch

from dreamo_core.spec import DreamOSpec
from dreamo_core.weights.formats import DreamOWeights, LoraFormat, parse_dreamo_state_dict
from dreamo_core.weights.lora_diffusers import merge_lora, xlabs_to_diffusers

TINY = DreamOSpec(hidden_size=32, num_double_blocks=2, num_single_blocks=2, t5_dim=16)
H, R = 32, 4
DOUBLE = {"qkv_lora1": (H, 3 * H), "proj_lora1": (H, H), "qkv_lora2": (H, 3 * H), "proj_lora2": (H, H)}
SINGLE = {"qkv_lora": (H, 3 * H), "proj_lora": (5 * H, H)}  # (in, out)


def normalised_xlabs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for kind, tags in (("double_blocks", DOUBLE), ("single_blocks", SINGLE)):
        for block in range(2):
            for tag, (n_in, n_out) in tags.items():
                sd[f"{kind}.{block}.processor.{tag}.down.weight"] = torch.randn(R, n_in, generator=g) * 0.1
                sd[f"{kind}.{block}.processor.{tag}.up.weight"] = torch.randn(n_out, R, generator=g) * 0.1
    return sd


# (xlabs kind, tag) -> diffusers modules, written out from the spec's table (§5.2)
EXPECTED_TARGETS = {
    ("double_blocks", "qkv_lora1"): ["attn.to_q", "attn.to_k", "attn.to_v"],
    ("double_blocks", "proj_lora1"): ["attn.to_out.0"],
    ("double_blocks", "qkv_lora2"): ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
    ("double_blocks", "proj_lora2"): ["attn.to_add_out"],
    ("single_blocks", "qkv_lora"): ["attn.to_q", "attn.to_k", "attn.to_v"],
    ("single_blocks", "proj_lora"): ["proj_out"],
}
PREFIX = {"double_blocks": "transformer_blocks", "single_blocks": "single_transformer_blocks"}


def test_xlabs_to_diffusers_every_tag():
    xl = normalised_xlabs()
    out = xlabs_to_diffusers(xl)
    assert len(out) == 2 * 2 * (3 + 1 + 3 + 1) + 2 * 2 * (3 + 1)
    for (kind, tag), targets in EXPECTED_TARGETS.items():
        for block in range(2):
            down = xl[f"{kind}.{block}.processor.{tag}.down.weight"]
            up = xl[f"{kind}.{block}.processor.{tag}.up.weight"]
            rows = up.shape[0] // len(targets)
            for j, target in enumerate(targets):
                base = f"transformer.{PREFIX[kind]}.{block}.{target}"
                assert torch.equal(out[f"{base}.lora_A.weight"], down), base  # the SAME down for q, k and v
                assert torch.equal(out[f"{base}.lora_B.weight"], up[j * rows : (j + 1) * rows]), base
    assert out["transformer.single_transformer_blocks.1.proj_out.lora_A.weight"].shape == (R, 5 * H)
    assert out["transformer.transformer_blocks.0.attn.add_v_proj.lora_B.weight"].shape == (H, R)


def xlabs_weights(seed: int = 0) -> DreamOWeights:
    return parse_dreamo_state_dict(normalised_xlabs(seed), TINY, "dreamo.safetensors")


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_merge_adds_exactly_strength_times_up_down(tiny_flux):
    before = snapshot(tiny_flux)
    xl = normalised_xlabs()
    s = 0.7
    assert merge_lora(tiny_flux, xlabs_weights(), strength=s) == 24
    after = snapshot(tiny_flux)
    touched = set()
    for (kind, tag), targets in EXPECTED_TARGETS.items():
        for block in range(2):
            down = xl[f"{kind}.{block}.processor.{tag}.down.weight"]
            up = xl[f"{kind}.{block}.processor.{tag}.up.weight"]
            deltas = []
            for j, target in enumerate(targets):
                key = f"{PREFIX[kind]}.{block}.{target}.weight"
                touched.add(key)
                delta = after[key] - before[key]
                rows = up[j * H : (j + 1) * H]
                torch.testing.assert_close(delta, s * rows @ down, rtol=0, atol=1e-6)
                assert delta.abs().max() > 1e-3
                deltas.append(delta)
            # the fused view: q, k, v deltas stacked are one low-rank update of the BFL qkv / linear1 rows
            torch.testing.assert_close(torch.cat(deltas), s * up @ down, rtol=0, atol=1e-6)
    assert len(touched) == 24
    for key in before:
        if key not in touched:
            assert torch.equal(before[key], after[key]), key


def test_strength_zero_is_bit_identical(tiny_flux):
    before = snapshot(tiny_flux)
    merge_lora(tiny_flux, xlabs_weights(), strength=0.0)
    after = snapshot(tiny_flux)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_negative_strength_undoes(tiny_flux):
    before = snapshot(tiny_flux)
    merge_lora(tiny_flux, xlabs_weights(), strength=-0.8)
    merge_lora(tiny_flux, xlabs_weights(), strength=0.8)
    after = snapshot(tiny_flux)
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=1e-6)


def diffusers_weights(alpha: float | None, default_suffix: bool = False) -> tuple[DreamOWeights, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(R, H, generator=g), torch.randn(H, R, generator=g)
    mid = ".default" if default_suffix else ""
    sd = {f"transformer.transformer_blocks.1.attn.to_k.lora_A{mid}.weight": a,
          f"transformer.transformer_blocks.1.attn.to_k.lora_B{mid}.weight": b}
    if alpha is not None:
        sd["transformer.transformer_blocks.1.attn.to_k.alpha"] = torch.tensor(alpha)
    w = parse_dreamo_state_dict(sd, TINY, "dpo.safetensors")
    assert w.lora_format is LoraFormat.DIFFUSERS
    return w, a, b


@pytest.mark.parametrize("alpha, default_suffix, scale", [(None, False, 1.0), (2.0, False, 0.5), (8.0, False, 2.0), (None, True, 1.0)])
def test_diffusers_lora_alpha_scales_by_alpha_over_rank(tiny_flux, alpha, default_suffix, scale):
    w, a, b = diffusers_weights(alpha, default_suffix)
    before = snapshot(tiny_flux)
    assert merge_lora(tiny_flux, w, strength=1.25) == 1
    after = snapshot(tiny_flux)
    key = "transformer_blocks.1.attn.to_k.weight"
    torch.testing.assert_close(after[key] - before[key], 1.25 * scale * (b @ a), rtol=0, atol=1e-5)
    assert all(torch.equal(before[k], after[k]) for k in before if k != key)


def test_comfyui_format_refused(tiny_flux):
    sd = {"diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight": torch.zeros(R, H),
          "diffusion_model.double_blocks.0.img_attn.qkv.lora_up.weight": torch.zeros(3 * H, R)}
    w = parse_dreamo_state_dict(sd, TINY, "dreamo_comfyui.safetensors")
    with pytest.raises(ValueError, match=r"dreamo_comfyui\.safetensors: ComfyUI-format LoRA files load in ComfyUI; the standalone "
                                         r"generator takes the original DreamO files"):
        merge_lora(tiny_flux, w)


def test_embedding_only_file_merges_nothing(tiny_flux):
    before = snapshot(tiny_flux)
    w = DreamOWeights(source="embedding.safetensors", lora_format=LoraFormat.NONE)
    assert merge_lora(tiny_flux, w) == 0
    assert all(torch.equal(before[k], v) for k, v in snapshot(tiny_flux).items())


def test_missing_target_module(tiny_flux):
    sd = {"transformer.transformer_blocks.7.attn.to_q.lora_A.weight": torch.zeros(R, H),
          "transformer.transformer_blocks.7.attn.to_q.lora_B.weight": torch.zeros(H, R)}
    with pytest.raises(ValueError, match=r"x\.safetensors: LoRA target 'transformer_blocks\.7\.attn\.to_q' is not a Linear layer of this transformer"):
        merge_lora(tiny_flux, parse_dreamo_state_dict(sd, TINY, "x.safetensors"))


def test_shape_mismatch_with_the_layer(tiny_flux):
    sd = {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(R, 16),
          "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(H, R)}
    with pytest.raises(ValueError, match=r"x\.safetensors: LoRA for transformer_blocks\.0\.attn\.to_q gives \(32, 16\), the layer is \(32, 32\)"):
        merge_lora(tiny_flux, parse_dreamo_state_dict(sd, TINY, "x.safetensors"))


def test_xlabs_lora_for_a_deeper_model(tiny_flux):
    deeper = DreamOSpec(hidden_size=32, num_double_blocks=3, num_single_blocks=2, t5_dim=16)
    sd = {"double_blocks.2.processor.proj_lora1.down.weight": torch.zeros(R, H),
          "double_blocks.2.processor.proj_lora1.up.weight": torch.zeros(H, R)}
    with pytest.raises(ValueError, match=r"LoRA target 'transformer_blocks\.2\.attn\.to_out\.0' is not a Linear layer"):
        merge_lora(tiny_flux, parse_dreamo_state_dict(sd, deeper, "deep.safetensors"))
