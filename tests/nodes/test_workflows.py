"""The shipped UI workflows load against the live registry and EXECUTE on tiny models.

Substitutions (test-only, restored after each test): UNETLoader -> a tiny FLUX, DualCLIPLoader -> a fake
CLIP, CLIPTextEncode -> seeded random conditioning (context (1, 5, 48) + pooled (1, 32)), VAELoader -> a tiny
VAE. LoadImage, our nodes, LoraLoaderModelOnly (synthetic files with the official names), FluxGuidance,
EmptySD3LatentImage, KSampler, VAEDecode and SaveImage are the real ComfyUI nodes. For speed the latent is
64x64 px, KSampler runs 2 steps and reference resolution is 256.
"""

import asyncio
import json
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

h = pytest.importorskip("dreamo_nodes_harness", reason="COMFYUI_PATH is not set: node tests need a ComfyUI checkout")
sys.path.append(str(Path(__file__).parent))  # appended: never ahead of ComfyUI
from workflow_api import ui_to_api, widget_names  # noqa: E402

WORKFLOWS = sorted((h.REPO / "workflows").glob("*.json"))
TEMPLATE_DIRS = ("example_workflows", "example", "examples", "workflow", "workflows")


class FakeUNETLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": ("STRING", {}), "weight_dtype": ("STRING", {})}}
    RETURN_TYPES, FUNCTION = ("MODEL",), "load"

    def load(self, unet_name, weight_dtype):
        return (h.tiny_flux(),)


class FakeDualCLIPLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name1": ("STRING", {}), "clip_name2": ("STRING", {}), "type": ("STRING", {})},
                "optional": {"device": ("STRING", {})}}
    RETURN_TYPES, FUNCTION = ("CLIP",), "load"

    def load(self, **_):
        return ("fake-clip",)


class FakeCLIPTextEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True}), "clip": ("CLIP",)}}
    RETURN_TYPES, FUNCTION = ("CONDITIONING",), "encode"

    def encode(self, text, clip):
        return (h.conditioning(zlib.crc32(text.encode())),)


class FakeVAELoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae_name": ("STRING", {})}}
    RETURN_TYPES, FUNCTION = ("VAE",), "load"

    def load(self, vae_name):
        return (h.tiny_vae(),)


class Server:
    client_id = None
    last_node_id = None

    def send_sync(self, *args, **kwargs):
        pass

    def queue_updated(self):
        pass


def load_ui(path):
    return json.loads(path.read_text())


def test_only_one_template_folder_and_ten_workflows():
    present = [d for d in TEMPLATE_DIRS if (h.REPO / d).is_dir()]
    assert present == ["workflows"] and len(WORKFLOWS) == 10
    assert all(p.with_suffix(".png").is_file() for p in WORKFLOWS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_matches_live_registry(path):
    import nodes

    ui = load_ui(path)
    assert ui["version"] == 0.4
    links = {lk[0]: lk for lk in ui["links"]}
    by_id = {n["id"]: n for n in ui["nodes"]}
    for node in ui["nodes"]:
        cls = nodes.NODE_CLASS_MAPPINGS.get(node["type"])
        assert cls is not None, f"missing node type {node['type']}"
        assert len(node["widgets_values"]) == len(widget_names(cls)), node["type"]
        spec = cls.INPUT_TYPES()
        sockets = {**spec.get("required", {}), **spec.get("optional", {})}
        for inp in node["inputs"]:
            assert inp["name"] in sockets and sockets[inp["name"]][0] == inp["type"], (node["type"], inp["name"])
            if inp["link"] is not None:
                _, src, slot, dst, _, typ = links[inp["link"]]
                assert dst == node["id"] and by_id[src]["outputs"][slot]["type"] == typ == inp["type"]
        # the frontend keeps a saved node's outputs and adds outputs a newer ComfyUI declares (0.33's SaveImage
        # has an IMAGE output): saved outputs must be a prefix of the live ones, and links must leave saved slots
        outs = [str(t) for t in cls.RETURN_TYPES]
        saved = [o["type"] for o in node["outputs"]]
        assert saved == outs[: len(saved)], (node["type"], saved, outs)
        assert all(lk[1] != node["id"] or lk[2] < len(saved) for lk in ui["links"]), node["type"]


@pytest.fixture
def comfy_dirs(tmp_path, loras_dir, monkeypatch):
    import folder_paths

    import nodes

    for name, (cls) in {"UNETLoader": FakeUNETLoader, "DualCLIPLoader": FakeDualCLIPLoader,
                        "CLIPTextEncode": FakeCLIPTextEncode, "VAELoader": FakeVAELoader}.items():
        monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, name, cls)
    inp, out = tmp_path / "input", tmp_path / "output"
    inp.mkdir()
    out.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(["dreamo_subject", "dreamo_subject2", "dreamo_subject3", "dreamo_face", "dreamo_style",
                              "dreamo_garment"]):
        px = rng.integers(0, 255, (48 + 8 * i, 64, 4), dtype=np.uint8)
        px[..., 3] = 255
        px[:8, :, 3] = 0  # a transparent band: LoadImage's MASK is 1 there
        Image.fromarray(px, "RGBA").save(inp / f"{name}.png")
    old_in, old_out = folder_paths.get_input_directory(), folder_paths.get_output_directory()
    folder_paths.set_input_directory(str(inp))
    folder_paths.set_output_directory(str(out))
    yield out
    folder_paths.set_input_directory(old_in)
    folder_paths.set_output_directory(old_out)


def shrink(prompt):
    for n in prompt.values():
        i = n["inputs"]
        if n["class_type"] == "EmptySD3LatentImage":
            i["width"] = i["height"] = 64
        elif n["class_type"] == "KSampler":
            i["steps"] = 2
        elif n["class_type"] == "DreamO_EncodeReference":
            i["resolution"] = 256
    return prompt


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_executes_on_tiny_models(path, comfy_dirs):
    import execution

    import nodes

    prompt = shrink(ui_to_api(load_ui(path), nodes.NODE_CLASS_MAPPINGS))
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("test", prompt, None))
    assert valid, (error, node_errors)
    executor = h.prompt_executor(Server())
    executor.execute(prompt, "test", {}, outputs)
    assert executor.success, executor.status_messages[-1:]
    saved = sorted(comfy_dirs.glob("DreamO_0*.png"))  # the result; DreamO_routing_* are routing overlays
    assert len(saved) == 1
    overlays = sorted(comfy_dirs.glob("DreamO_routing_*.png"))
    n_refs = sum(n["class_type"] == "DreamO_EncodeReference" for n in prompt.values())
    has_preview = any(n["class_type"] == "DreamO_RoutingPreview" for n in prompt.values())
    assert len(overlays) == (n_refs if has_preview else 0)  # one overlay per reference
    img = np.asarray(Image.open(saved[0]))
    assert img.shape == (64, 64, 3) and img.std() > 0
    applied = [n for n in prompt.values() if n["class_type"] == "DreamO_ApplyConditioning"]
    assert len(applied) == 1
