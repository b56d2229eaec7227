"""Load DreamO LoRA on synthetic files in the real key formats; deltas checked against up @ down."""

import logging

import pytest
import torch
from safetensors.torch import save_file

from bench import comfy_harness as h

H = h.HIDDEN


def patched_weights(model) -> dict[str, torch.Tensor]:
    """Weights with the patcher's LoRA patches applied (then restored)."""
    model.patch_model()
    try:
        return {k: v.detach().clone() for k, v in model.model.diffusion_model.state_dict().items()}
    finally:
        model.unpatch_model()


def load(model, lora="None", strength=1.0, emb="None"):
    return h.run_node("DreamO_LoadLoRA", model=model, lora_name=lora, strength=strength, embedding_name=emb)[0]


def expected_xlabs_deltas(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, tuple[slice, torch.Tensor]]:
    """Hand table: XLabs tag -> BFL weight and rows (qkv_lora of a single block = rows 0:3H of linear1)."""
    def d(block, tag):
        k = f"{prefix}{block}.processor.{tag}"
        return sd[f"{k}.up.weight"] @ sd[f"{k}.down.weight"]
    return {
        "double_blocks.0.img_attn.qkv.weight": (slice(0, 3 * H), d("double_blocks_0", "qkv_lora1")),
        "double_blocks.0.img_attn.proj.weight": (slice(0, H), d("double_blocks_0", "proj_lora1")),
        "double_blocks.0.txt_attn.qkv.weight": (slice(0, 3 * H), d("double_blocks_0", "qkv_lora2")),
        "double_blocks.0.txt_attn.proj.weight": (slice(0, H), d("double_blocks_0", "proj_lora2")),
        "single_blocks.0.linear1.weight": (slice(0, 3 * H), d("single_blocks_0", "qkv_lora")),
        "single_blocks.0.linear2.weight": (slice(0, H), d("single_blocks_0", "proj_lora")),
    }


def comfy_deltas(sd: dict[str, torch.Tensor], strength: float = 1.0) -> dict[str, tuple[slice, torch.Tensor]]:
    """Hand table of a ComfyUI-format LoRA (``h.comfy_lora``): BFL weight -> (rows, strength * up @ down)."""
    def d(n):
        return strength * sd[f"diffusion_model.{n}.lora_up.weight"] @ sd[f"diffusion_model.{n}.lora_down.weight"]
    return {f"{n}.weight": (slice(0, w), d(n)) for n, w in (("double_blocks.0.img_attn.proj", H),
                                                             ("single_blocks.0.linear1", 7 * H))}


def assert_deltas(base_w, new_w, expected, strength):
    for key in base_w:
        diff = new_w[key] - base_w[key]
        if key in expected:
            rows, delta = expected[key]
            torch.testing.assert_close(diff[rows], strength * delta, atol=1e-5, rtol=1e-4)
            assert torch.count_nonzero(diff[rows.stop:]) == 0, key  # e.g. linear1's MLP rows untouched
        else:
            assert torch.count_nonzero(diff) == 0, key


@pytest.mark.parametrize("style", ["dreamo.safetensors", "dot_prefixed.safetensors"])
def test_original_dreamo_file_deltas(loras_dir, style):
    prefix = "" if style == "dreamo.safetensors" else "transformer."
    sd = h.xlabs_lora(prefix=prefix)
    if style != "dreamo.safetensors":  # another spelling of the same XLabs keys, with embeddings
        save_file({**{k.replace("_blocks_0", "_blocks.0"): v for k, v in sd.items()}, **h.tiny_tables()},
                  str(loras_dir / style))
        h.write_loras(loras_dir)
        sd = {k.replace("_blocks.0", "_blocks_0"): v for k, v in sd.items()}
    base = h.tiny_flux()
    m = load(base, style, 0.7)
    assert_deltas(patched_weights(base), patched_weights(m), expected_xlabs_deltas(sd, prefix), 0.7)
    tables = m.get_attachment("dreamo_embeddings")
    assert torch.equal(tables.task, h.tiny_tables()["dreamo_task_embedding.weight"])
    assert base.get_attachment("dreamo_embeddings") is None and not base.patches


def test_comfy_format_lora_with_embedding_file(loras_dir):
    base = h.tiny_flux()
    m = load(base, "dreamo_comfyui.safetensors", 1.0, "embedding.safetensors")
    assert_deltas(patched_weights(base), patched_weights(m), comfy_deltas(h.comfy_lora()), 1.0)
    assert torch.equal(m.get_attachment("dreamo_embeddings").idx, h.tiny_tables()["dreamo_idx_embedding.weight"])


def test_strength_zero_is_bit_identical(loras_dir):
    base = h.tiny_flux()
    m = load(base, "dreamo.safetensors", 0.0)
    assert not m.patches
    w0, w1 = patched_weights(base), patched_weights(m)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert m.get_attachment("dreamo_embeddings") is not None


def test_second_lora_stacks_with_core_loader(loras_dir):
    import nodes

    base = h.tiny_flux()
    m = load(base, "dreamo.safetensors", 1.0)
    (m2,) = nodes.LoraLoaderModelOnly().load_lora_model_only(m, "dreamo_cfg_distill_comfyui.safetensors", 0.5)
    assert m2.get_attachment("dreamo_embeddings") is m.get_attachment("dreamo_embeddings")
    sd = h.comfy_lora(seed=4)
    w_base, w1, w2 = patched_weights(base), patched_weights(m), patched_weights(m2)
    n = "double_blocks.0.img_attn.proj"
    want = 0.5 * sd[f"diffusion_model.{n}.lora_up.weight"] @ sd[f"diffusion_model.{n}.lora_down.weight"]
    torch.testing.assert_close(w2[f"{n}.weight"] - w1[f"{n}.weight"], want, atol=1e-5, rtol=1e-4)
    assert not torch.equal(w1[f"{n}.weight"], w_base[f"{n}.weight"])


def test_embedding_only_then_core_loras(loras_dir):
    """Only the tables from Load DreamO LoRA, every LoRA from core LoraLoaderModelOnly after it (the DreamO LoRA in
    ComfyUI format at 1.0, then cfg-distill at 0.5): the patched weights are the base plus both deltas, merged by
    hand, and the same as with the DreamO LoRA loaded by Load DreamO LoRA itself."""
    import nodes

    base = h.tiny_flux()
    m = load(base, emb="embedding.safetensors")
    assert not m.patches and m.get_attachment("dreamo_embeddings") is not None
    core = nodes.LoraLoaderModelOnly()
    (m1,) = core.load_lora_model_only(m, "dreamo_comfyui.safetensors", 1.0)
    (m2,) = core.load_lora_model_only(m1, "dreamo_cfg_distill_comfyui.safetensors", 0.5)
    assert m2.get_attachment("dreamo_embeddings") is m.get_attachment("dreamo_embeddings")
    dreamo, distill = comfy_deltas(h.comfy_lora()), comfy_deltas(h.comfy_lora(seed=4), 0.5)
    merged = {k: (rows, delta + distill[k][1]) for k, (rows, delta) in dreamo.items()}
    w_base, w_stacked = patched_weights(base), patched_weights(m2)
    assert_deltas(w_base, w_stacked, merged, 1.0)  # every other weight bit-identical to the base
    (direct,) = core.load_lora_model_only(load(base, "dreamo_comfyui.safetensors", 1.0, "embedding.safetensors"),
                                          "dreamo_cfg_distill_comfyui.safetensors", 0.5)
    w_direct = patched_weights(direct)
    for key in w_base:
        torch.testing.assert_close(w_stacked[key], w_direct[key], atol=1e-6, rtol=0)


@pytest.mark.parametrize(("lora", "emb", "message"), [
    ("not_dreamo.safetensors", "None", "not a DreamO file"),
    ("None", "tables_wrong_width.safetensors", "expected (2, 128)"),
    ("dreamo_comfyui.safetensors", "None", "no DreamO embeddings"),
    ("None", "dreamo_comfyui.safetensors", "holds a LoRA"),
    ("None", "None", "no DreamO embeddings"),
])
def test_bad_files_raise_clear_errors(loras_dir, lora, emb, message):
    with pytest.raises(ValueError, match="Load DreamO LoRA") as e:
        load(h.tiny_flux(), lora, 1.0, emb)
    assert message in str(e.value)


def test_lora_key_that_does_not_load_fails_loudly(loras_dir):
    sd = {**h.comfy_lora(), "diffusion_model.double_blocks.0.nonexistent.lora_down.weight": torch.zeros(4, H),
          "diffusion_model.double_blocks.0.nonexistent.lora_up.weight": torch.zeros(H, 4)}
    save_file(sd, str(loras_dir / "partly_foreign.safetensors"))
    sd_x = {k.replace("double_blocks_0", "double_blocks_1"): v for k, v in h.xlabs_lora().items()}
    save_file({**sd_x, **h.tiny_tables()}, str(loras_dir / "deeper_model.safetensors"))
    h.write_loras(loras_dir)
    with pytest.raises(ValueError, match="do not exist in this model"):
        load(h.tiny_flux(), "partly_foreign.safetensors", 1.0, "embedding.safetensors")
    with pytest.raises(ValueError, match="block 1 does not exist"):
        load(h.tiny_flux(), "deeper_model.safetensors", 1.0)


def test_non_flux_model_is_rejected(loras_dir):
    import comfy.model_patcher

    other = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match="Load DreamO LoRA: DreamO needs a FLUX.1-dev model"):
        load(other, "None", 1.0, "embedding.safetensors")


FAMILY_WHY = {"flux1-schnell": "no guidance embedding", "flux1-fill": "input latent channels",
              "chroma": "a Chroma model", "flux2": "a FLUX.2 model"}


@pytest.mark.parametrize("name", sorted(FAMILY_WHY))
def test_other_flux_family_models_are_rejected_by_both_nodes(loras_dir, name):
    """FLUX.2, Chroma, Fill and schnell share core's Flux classes: both nodes name what the model is instead of
    failing later on a width or a LoRA key."""
    import comfy.model_base

    other = h.tiny_family_model(name)
    if other is None:  # only where this ComfyUI predates the family (FLUX.2 arrived in 0.3.72)
        assert name == "flux2" and not hasattr(comfy.model_base, "Flux2")
        return
    with pytest.raises(ValueError, match=f"Load DreamO LoRA: DreamO needs a FLUX.1-dev model.*{FAMILY_WHY[name]}"):
        load(other, "None", 1.0, "embedding.safetensors")
    with pytest.raises(ValueError, match=f"Apply DreamO Conditioning: DreamO needs a FLUX.1-dev model.*{FAMILY_WHY[name]}"):
        h.run_node("DreamO_ApplyConditioning", model=other, positive=h.conditioning(0))


class PackedTensor(torch.Tensor):
    """Like ComfyUI-GGUF's GGMLTensor: packed bytes, the logical shape in ``tensor_shape``."""


def packed(raw_shape, logical_shape):
    t = torch.Tensor._make_subclass(PackedTensor, torch.zeros(raw_shape, dtype=torch.uint8))
    t.tensor_shape = torch.Size(logical_shape)
    return t


def test_target_shapes_use_the_logical_shape_and_skip_the_unknown():
    P = h.pack("nodes.runtime.lora_patches")
    sd = {"gguf.weight": packed((128, 72), (128, 128)), "fp8.weight": torch.zeros(896, 128, dtype=torch.float8_e4m3fn),
          "packed.weight": torch.zeros(128, 64, dtype=torch.uint8)}  # integer data without a logical shape
    targets = {"a": "gguf.weight", "b": ("fp8.weight", (0, 0, 384)), "c": "packed.weight", "d": "absent.weight"}
    assert P.target_shapes(sd, targets) == {"a": (128, 128), "b": (384, 128), "c": None, "d": None}


def test_lora_shape_check_on_an_fp8_model(loras_dir):
    """fp8 weights report their real shape: a LoRA of another width is refused there too, a fitting one loads."""
    fp8 = h.tiny_flux(dtype=torch.float8_e4m3fn, compute=torch.bfloat16)
    m = h.run_node("DreamO_LoadLoRA", model=fp8, lora_name="dreamo_comfyui.safetensors", strength=1.0,
                   embedding_name="embedding.safetensors")[0]
    assert len(m.patches) == 2
    narrow = h.comfy_lora()
    narrow["diffusion_model.double_blocks.0.img_attn.proj.lora_down.weight"] = torch.zeros(4, 64)
    save_file(narrow, str(loras_dir / "narrow_fp8.safetensors"))
    h.write_loras(loras_dir)
    with pytest.raises(ValueError, match=r"img_attn\.proj: the LoRA gives \(128, 64\), the model's weight is \(128, 128\)"):
        h.run_node("DreamO_LoadLoRA", model=fp8, lora_name="narrow_fp8.safetensors", strength=1.0,
                   embedding_name="embedding.safetensors")
    assert not fp8.patches


def test_applied_module_count_is_logged(loras_dir, caplog):
    with caplog.at_level(logging.INFO, logger="DreamO"):
        h.run_node("DreamO_LoadLoRA", model=h.tiny_flux(), lora_name="dreamo.safetensors", strength=0.5,
                   embedding_name="None")
    assert any("6 of 6 LoRA modules applied at strength 0.5" in r.getMessage() for r in caplog.records)


class WrapperWithoutForwardSeam(torch.nn.Module):
    """Like ComfyUI-nunchaku's FLUX wrapper: its own forward over a quantized transformer, no Flux ``_forward``."""

    def forward(self, x, timestep, context, y=None, guidance=None, control=None, transformer_options=None, **kw):
        return torch.zeros_like(x)


def test_replaced_diffusion_model_is_refused_by_what_it_lacks(loras_dir):
    """A Flux model base whose diffusion model has no _forward never runs DreamO's wrapper or post_input patch;
    both nodes name the object and point to the low-VRAM routes that keep ComfyUI's Flux."""
    m = h.tiny_flux()
    m.model.diffusion_model = WrapperWithoutForwardSeam()  # what ComfyUI-nunchaku's loader does to the model base
    for node, call in (("Load DreamO LoRA", lambda: load(m, "None", 1.0, "embedding.safetensors")),
                       ("Apply DreamO Conditioning",
                        lambda: h.run_node("DreamO_ApplyConditioning", model=m, positive=h.conditioning(0)))):
        with pytest.raises(ValueError, match=f"^{node}: DreamO needs a FLUX.1-dev model") as e:
            call()
        assert "WrapperWithoutForwardSeam is not ComfyUI's Flux (it has no _forward" in str(e.value)
        assert "GGUF" in str(e.value) and "fp8" in str(e.value) and "int8/int4" in str(e.value)
    m.model.diffusion_model = WrapperWithoutForwardSeam()
    m.model.diffusion_model._forward = lambda *a, **k: None  # the seam present: judged as a Flux model again
    with pytest.raises(ValueError, match="whose diffusion model is WrapperWithoutForwardSeam, not ComfyUI's own Flux"):
        load(m, "None", 1.0, "embedding.safetensors")
