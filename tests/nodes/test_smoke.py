from bench import comfy_harness as h


def test_pack_registers_three_nodes():
    import nodes

    for node_id in ("DreamO_LoadLoRA", "DreamO_EncodeReference", "DreamO_ApplyConditioning"):
        assert node_id in nodes.NODE_CLASS_MAPPINGS


def test_supported_comfyui_features_are_detected_not_version_sniffed():
    """This ComfyUI (0.3.64 or 0.33.0 in CI) has everything; an older one lacking them is named, with the version."""
    import types

    import comfy.ldm.flux.model
    import comfy.lora_convert
    import comfy.model_patcher

    support = h.pack("nodes.runtime.comfy_support")
    assert support.missing_features(comfy.model_patcher.ModelPatcher, comfy.lora_convert, comfy.ldm.flux.model.Flux) == []

    class OldFlux:  # 0.3.56-like: no "uxo", no ref_latents seam
        def _forward(self, x, timestep, context, y=None, guidance=None, control=None, transformer_options=None):
            return "offset" if x else "index"

    old = support.missing_features(types.SimpleNamespace(add_wrapper_with_key=1), types.SimpleNamespace(), OldFlux)
    assert "ModelPatcher.set_model_post_input_patch" in old and "Flux._forward(ref_latents=...)" in old
    assert any("convert_uso_lora" in m for m in old) and any('"uxo"' in m for m in old)
    assert "ModelPatcher.add_wrapper_with_key" not in old
