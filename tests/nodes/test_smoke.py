import pytest

h = pytest.importorskip("dreamo_nodes_harness", reason="COMFYUI_PATH is not set: node tests need a ComfyUI checkout")


def test_pack_registers_three_nodes():
    import nodes

    for node_id in ("DreamO_LoadLoRA", "DreamO_EncodeReference", "DreamO_ApplyConditioning"):
        assert node_id in nodes.NODE_CLASS_MAPPINGS
