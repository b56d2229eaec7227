import asyncio

from bench import comfy_harness as h

# node id -> display name, in the extension's order (written out here; the pack's are in nodes/node_names.py)
NODES = {
    "DreamO_LoadLoRA": "Load DreamO LoRA",
    "DreamO_EncodeReference": "DreamO Encode Reference",
    "DreamO_ReferenceOptions": "DreamO Reference Options",
    "DreamO_ApplyConditioning": "Apply DreamO Conditioning",
    "DreamO_TextEncode": "DreamO Text Encode",
    "DreamO_RoutingRecorder": "DreamO Routing Recorder",
    "DreamO_RoutingPreview": "DreamO Routing Preview",
}
CATEGORY = "conditioning/dreamo"


def test_pack_registers_every_node():
    """The extension's node list is exactly the seven nodes, each registered by ComfyUI under its id with its
    display name and category, and each schema passes ComfyUI's own validation."""
    import nodes

    listed = asyncio.run(h.pack("nodes").DreamOExtension().get_node_list())
    assert [cls.define_schema().node_id for cls in listed] == list(NODES)
    assert sorted(k for k in nodes.NODE_CLASS_MAPPINGS if k.startswith("DreamO")) == sorted(NODES)
    for cls in listed:
        schema = cls.GET_SCHEMA()  # ComfyUI's own checks: class, finalized schema, unique ids (0.33: every input/output)
        node_id = schema.node_id
        assert nodes.NODE_CLASS_MAPPINGS[node_id] is cls
        assert schema.display_name == NODES[node_id] == nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id]
        assert schema.category == CATEGORY
        info = cls.GET_NODE_INFO_V1()  # what /object_info serves the frontend
        assert (info["name"], info["display_name"], info["category"]) == (node_id, NODES[node_id], CATEGORY)


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
