"""Old DreamO graphs (ToTheBeginning/ComfyUI-DreamO) migrate through ComfyUI's node replacements (0.14+), and
the pack still loads where there are none (0.3.64)."""

import asyncio
import types

import pytest
import torch

from bench import comfy_harness as h

OLD_ENCODE_INPUTS = {"pixels", "vae", "dreamo_processor", "resolution", "ref_task"}  # as documented in migration.py


@pytest.fixture
def replace_manager(monkeypatch):
    """A real NodeReplaceManager on a stand-in PromptServer.instance (the tests run ComfyUI without its server);
    None where this ComfyUI has no node replacements."""
    if not has_node_replacements():
        return None
    import server
    from app.node_replace_manager import NodeReplaceManager

    manager = NodeReplaceManager()
    monkeypatch.setattr(server.PromptServer, "instance", types.SimpleNamespace(node_replace_manager=manager),
                        raising=False)
    return manager


def has_node_replacements() -> bool:
    from comfy_api.latest import io

    return hasattr(io, "NodeReplace")


def test_replacements_are_feature_detected():
    migration = h.pack("nodes.runtime.migration")
    if not has_node_replacements():  # 0.3.64: nothing to register with, and loading the pack still worked
        assert h.comfyui_version() < (0, 14, 0)
        assert migration.replacement_api() is None
        assert asyncio.run(migration.register_replacements()) == 0
        import nodes

        assert "DreamO_EncodeReference" in nodes.NODE_CLASS_MAPPINGS
        return
    assert h.comfyui_version() >= (0, 14, 0)
    import server

    if getattr(server.PromptServer, "instance", None) is None:  # ComfyUI imported without its server (here)
        assert migration.replacement_api() is None


def test_old_ref_encode_opens_as_encode_reference(replace_manager):
    if not has_node_replacements():
        assert h.comfyui_version() < (0, 14, 0)
        return
    assert h.pack("nodes.runtime.migration").replacement_api() is not None
    asyncio.run(h.pack("nodes").DreamOExtension().on_load())
    table = replace_manager.as_dict()
    assert set(table) == {"DreamORefEncode"}  # ApplyDreamO / DreamOProcessorLoader: no faithful counterpart
    entry = table["DreamORefEncode"][0]
    assert entry["new_node_id"] == "DreamO_EncodeReference"
    schema = h.node("DreamO_EncodeReference").INPUT_TYPES()
    ours = {**schema["required"], **schema.get("optional", {})}
    assert all(m["new_id"] in ours for m in entry["input_mapping"])
    assert {m["old_id"] for m in entry["input_mapping"] if "old_id" in m} <= OLD_ENCODE_INPUTS
    assert set(entry["old_widget_ids"]) <= OLD_ENCODE_INPUTS

    # an old API prompt, migrated by ComfyUI's own server-side replacement, runs on our node
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}, "_meta": {}},
              "2": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}, "_meta": {}},
              "3": {"class_type": "DreamOProcessorLoader", "inputs": {}, "_meta": {}},
              "4": {"class_type": "DreamORefEncode", "_meta": {},
                    "inputs": {"pixels": ["1", 0], "vae": ["2", 0], "dreamo_processor": ["3", 0],
                               "resolution": 512, "ref_task": "style"}}}
    replace_manager.apply_replacements(prompt)
    assert prompt["4"]["class_type"] == "DreamO_EncodeReference"
    assert prompt["4"]["inputs"] == {"image": ["1", 0], "vae": ["2", 0], "resolution": 512, "task": "style",
                                     "index": 1, "invert_mask": False}
    assert prompt["3"]["class_type"] == "DreamOProcessorLoader"  # left for the user to delete
    inputs = {k: v for k, v in prompt["4"]["inputs"].items() if k not in ("image", "vae")}
    (refs,) = h.run_node("DreamO_EncodeReference", image=torch.rand(1, 64, 48, 3), vae=h.tiny_vae(),
                         **{**inputs, "resolution": 256})
    assert [(r.task, r.index) for r in refs.refs] == [("style", 1)]
