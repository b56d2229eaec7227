"""The shipped UI workflows load against the live registry and EXECUTE on tiny models.

Substitutions (test-only, restored after each test): UNETLoader -> a tiny FLUX, DualCLIPLoader -> a fake
CLIP, CLIPTextEncode -> seeded random conditioning (context (1, 5, 48) + pooled (1, 32)), VAELoader -> a tiny
VAE; in the auto-preprocessing workflows (ComfyUI 0.33) LoadBackgroundRemovalModel -> a model whose mask is an
ellipse, LoadMediaPipeFaceLandmarker / MediaPipeFaceLandmarker -> a fixed face box (no weights here);
RemoveBackground and CropByBBoxes run for real. LoadImage, our nodes, LoraLoaderModelOnly (synthetic files with the official names), FluxGuidance,
EmptySD3LatentImage, KSampler, VAEDecode and SaveImage are the real ComfyUI nodes, and so are the fusion workflow's
ImageScale, VAEEncode, SolidMask, MaskComposite, GrowMask and SetLatentNoiseMask. For speed the latent (and the
fusion's background) is 64x64 px, KSampler runs 2 steps and reference resolution is 256.
"""

import asyncio
import json
import zlib

import numpy as np
import pytest
from PIL import Image

from bench import comfy_harness as h
from bench.comfy_harness.workflow_api import FRONTEND_ONLY, ui_to_api, widget_names

WORKFLOWS = sorted((h.REPO / "workflows").glob("*.json"))
TOY = "dreamo_toy"  # runs on the repo's trained toy with its own stand-in loaders: tests/nodes/test_toy_workflow.py
REGIONAL = "dreamo_regional_two_subjects"
PREPROCESSING = ("LoadBackgroundRemovalModel", "RemoveBackground", "LoadMediaPipeFaceLandmarker",
                 "MediaPipeFaceLandmarker", "CropByBBoxes")  # core nodes the *_comfyui_0_33 workflows need
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


class FakeBackgroundRemover:
    def encode_image(self, image):  # (B, H, W, C) -> (B, H, W): an ellipse of foreground
        b, hh, ww, _ = image.shape
        yy, xx = np.mgrid[0:hh, 0:ww]
        inside = ((yy - hh / 2) / (hh / 2)) ** 2 + ((xx - ww / 2) / (ww / 2)) ** 2 <= 0.8
        import torch

        return torch.from_numpy(inside).float().expand(b, hh, ww).clone()


class FakeLoadBackgroundRemovalModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"bg_removal_name": ("STRING", {})}}
    RETURN_TYPES, FUNCTION = ("BACKGROUND_REMOVAL",), "load"

    def load(self, bg_removal_name):
        return (FakeBackgroundRemover(),)


class FakeLoadFaceLandmarker:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": ("STRING", {})}}
    RETURN_TYPES, FUNCTION = ("FACE_DETECTION_MODEL",), "load"

    def load(self, model_name):
        return ("fake-face-detector",)


class FakeFaceLandmarker:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"face_detection_model": ("FACE_DETECTION_MODEL",), "image": ("IMAGE",),
                             "detector_variant": ("STRING", {}), "num_faces": ("INT", {}),
                             "min_confidence": ("FLOAT", {}), "missing_frame_fallback": ("STRING", {})}}
    RETURN_TYPES, FUNCTION = ("FACE_LANDMARKS", "BOUNDING_BOX"), "detect"

    def detect(self, face_detection_model, image, **_):
        hh, ww = image.shape[1:3]
        box = {"x": ww // 4, "y": hh // 4, "width": ww // 2, "height": hh // 2, "label": "face", "score": 1.0}
        return (None, [[box] for _ in range(image.shape[0])])


def needs_preprocessing(ui) -> bool:
    return any(n["type"] in PREPROCESSING for n in ui["nodes"])


def load_ui(path):
    return json.loads(path.read_text())


def test_only_one_template_folder_and_seventeen_workflows():
    present = [d for d in TEMPLATE_DIRS if (h.REPO / d).is_dir()]
    assert present == ["workflows"] and len(WORKFLOWS) == 17 and TOY in [p.stem for p in WORKFLOWS]
    assert all((p.parent / f"{p.stem}.jpg").is_file() for p in WORKFLOWS)  # the template browser's thumbnail
    auto = [p.stem for p in WORKFLOWS if needs_preprocessing(load_ui(p))]
    assert auto == [p.stem for p in WORKFLOWS if p.stem.endswith("_comfyui_0_33")] and len(auto) == 3


def test_preprocessing_nodes_exist_exactly_where_expected():
    """The auto-preprocessing workflows name the ComfyUI they need: on 0.33 every core node they use is
    registered, on 0.3.64 none is (so those workflows cannot run there, as their names say)."""
    import nodes

    present = {t: t in nodes.NODE_CLASS_MAPPINGS for t in PREPROCESSING}
    expected = h.comfyui_version() >= (0, 33, 0)
    assert present == dict.fromkeys(PREPROCESSING, expected), (h.comfyui_version(), present)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_matches_live_registry(path):
    import nodes

    ui = load_ui(path)
    assert ui["version"] == 0.4
    links = {lk[0]: lk for lk in ui["links"]}
    by_id = {n["id"]: n for n in ui["nodes"]}
    if needs_preprocessing(ui) and h.comfyui_version() < (0, 33, 0):  # named *_comfyui_0_33: not for this one
        assert not any(n["type"] in nodes.NODE_CLASS_MAPPINGS for n in ui["nodes"] if n["type"] in PREPROCESSING)
        return
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            assert node["widgets_values"] and not node["inputs"] and not node["outputs"]
            continue
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

    import nodes

    fakes = {"UNETLoader": FakeUNETLoader, "DualCLIPLoader": FakeDualCLIPLoader,
             "CLIPTextEncode": FakeCLIPTextEncode, "VAELoader": FakeVAELoader}
    if "RemoveBackground" in nodes.NODE_CLASS_MAPPINGS:
        fakes.update({"LoadBackgroundRemovalModel": FakeLoadBackgroundRemovalModel,
                      "LoadMediaPipeFaceLandmarker": FakeLoadFaceLandmarker,
                      "MediaPipeFaceLandmarker": FakeFaceLandmarker})
    for name, cls in fakes.items():
        monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, name, cls)
    inp, out = tmp_path / "input", tmp_path / "output"
    inp.mkdir()
    out.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(["dreamo_subject", "dreamo_subject2", "dreamo_subject3", "dreamo_face", "dreamo_style",
                              "dreamo_garment", "dreamo_background"]):
        px = rng.integers(0, 255, (48 + 8 * i, 64, 4), dtype=np.uint8)
        px[..., 3] = 255
        px[:8, :, 3] = 0  # a transparent band: LoadImage's MASK is 1 there
        Image.fromarray(px, "RGBA").save(inp / f"{name}.png")
    with h.io_directories(inp, out):
        yield out


def shrink(prompt):
    for n in prompt.values():
        i = n["inputs"]
        if n["class_type"] in ("EmptySD3LatentImage", "ImageScale"):  # ImageScale: the fusion's background
            i["width"] = i["height"] = 64
        elif n["class_type"] == "KSampler":
            i["steps"] = 2
        elif n["class_type"] == "DreamO_EncodeReference":
            i["resolution"] = 256
    return prompt


@pytest.mark.parametrize("path", [p for p in WORKFLOWS if p.stem != TOY], ids=lambda p: p.stem)
def test_workflow_executes_on_tiny_models(path, comfy_dirs):
    import execution

    import nodes

    ui = load_ui(path)
    if needs_preprocessing(ui) and h.comfyui_version() < (0, 33, 0):  # not runnable here, and not registered
        assert "RemoveBackground" not in nodes.NODE_CLASS_MAPPINGS
        return
    prompt = shrink(ui_to_api(ui, nodes.NODE_CLASS_MAPPINGS))
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("test", prompt, None))
    assert valid, (error, node_errors)
    executor = h.prompt_executor()
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
    assert len(applied) == (2 if path.stem == REGIONAL else 1)


def saved_latent(folder, prefix):
    from safetensors.torch import load_file

    (path,) = sorted(folder.glob(f"{prefix}_*.latent"))
    return load_file(str(path))["latent_tensor"]


def box_cells(box, grow, cells, fully):
    """Latent cells (row, col) of a ``cells`` x ``cells`` grid (the 1000 x 1000 mask canvas stretched to the latent)
    that lie entirely inside (``fully``) or entirely outside (not ``fully``) the box grown by ``grow`` (thousandths)."""
    x, y, w, h = box
    x0, y0, x1, y1 = (x, y, x + w, y + h) if fully else (x - grow, y - grow, x + w + grow, y + h + grow)
    size = 1000 / cells
    out = np.zeros((cells, cells), dtype=bool)
    for r in range(cells):
        for c in range(cells):
            r0, r1, c0, c1 = r * size, (r + 1) * size, c * size, (c + 1) * size
            if fully:
                out[r, c] = x0 <= c0 and c1 <= x1 and y0 <= r0 and r1 <= y1
            else:
                out[r, c] = c1 <= x0 or c0 >= x1 or r1 <= y0 or r0 >= y1
    return out


@pytest.mark.parametrize("noise_mask", [True, False], ids=["noise-mask", "mask-bypassed"])
def test_background_fusion_changes_only_inside_the_noise_mask(comfy_dirs, noise_mask):
    """The fusion workflow, executed: with its latent noise mask the sampled latent equals the background's latent
    outside the grown box (to float rounding) and differs inside it; with the mask bypassed the outside changes
    too (so the check can fail)."""
    import execution
    import torch

    import nodes

    prompt = shrink(ui_to_api(load_ui(h.REPO / "workflows" / "dreamo_background_fusion.json"), nodes.NODE_CLASS_MAPPINGS))
    ids = {n["class_type"]: k for k, n in prompt.items()}
    enc, ks, grow, comp = ids["VAEEncode"], ids["KSampler"], ids["GrowMask"], ids["MaskComposite"]
    box_size = next(n["inputs"] for n in prompt.values() if n["class_type"] == "SolidMask" and n["inputs"]["value"] == 1)
    box = (prompt[comp]["inputs"]["x"], prompt[comp]["inputs"]["y"], box_size["width"], box_size["height"])
    if not noise_mask:
        prompt[ks]["inputs"]["latent_image"] = [enc, 0]
    prompt["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [enc, 0], "filename_prefix": "fusion_in"}}
    prompt["901"] = {"class_type": "SaveLatent", "inputs": {"samples": [ks, 0], "filename_prefix": "fusion_out"}}
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("test", prompt, None))
    assert valid, (error, node_errors)
    executor = h.prompt_executor()
    executor.execute(prompt, "test", {}, outputs)
    assert executor.success, executor.status_messages[-1:]
    before, after = saved_latent(comfy_dirs, "fusion_in"), saved_latent(comfy_dirs, "fusion_out")
    assert before.shape == after.shape == (1, 16, 8, 8)
    diff = (after - before).abs().amax(dim=1)[0]  # (8, 8) over channels
    outside = torch.from_numpy(box_cells(box, prompt[grow]["inputs"]["expand"], 8, fully=False))
    inside = torch.from_numpy(box_cells(box, 0, 8, fully=True))
    assert outside.sum() >= 20 and inside.sum() >= 4
    print(f"fusion ({'noise mask' if noise_mask else 'no mask'}): max |change| outside {diff[outside].max():.3g}, "
          f"mean |change| inside {diff[inside].mean():.3g}")
    assert diff[inside].min() > 1e-2  # the subject's box is re-generated
    if noise_mask:
        assert diff[outside].max() <= 1e-5
    else:
        assert diff[outside].max() > 1e-2


def run_with_saved_latent(prompt, folder, prefix):
    """Execute ``prompt`` with its KSampler's latent saved as ``prefix``; returns that latent (1, 16, h, w)."""
    import execution

    ks = next(k for k, n in prompt.items() if n["class_type"] == "KSampler")
    prompt = {**prompt, "900": {"class_type": "SaveLatent", "inputs": {"samples": [ks, 0], "filename_prefix": prefix}}}
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("test", prompt, None))
    assert valid, (error, node_errors)
    executor = h.prompt_executor()
    executor.execute(prompt, "test", {}, outputs)
    assert executor.success, executor.status_messages[-1:]
    return saved_latent(folder, prefix)


def area_columns(prompt, titles, side, width):
    """Latent columns [start, end) of the ConditioningSetAreaPercentage titled for ``side`` ("Left" / "Right"), as
    ComfyUI rounds a percentage area to the latent."""
    (area,) = [n["inputs"] for k, n in prompt.items() if n["class_type"] == "ConditioningSetAreaPercentage"
               and titles[k].startswith(side)]
    start = round(area["x"] * width)
    return start, start + max(1, round(area["width"] * width))


@pytest.mark.parametrize("changed", ["Left", "Right"])
def test_regional_workflow_keeps_each_region_to_its_own_references(comfy_dirs, changed):
    """The regional workflow, executed twice: once as shipped, once with one region's reference at another DreamO
    index. Only that region's part of the sampled latent changes; the other region's part is bit-identical (its
    prompt carries its own references and options, whatever the other Apply does)."""
    import torch

    import nodes

    ui = load_ui(h.REPO / "workflows" / f"{REGIONAL}.json")
    titles = {str(n["id"]): n.get("title", "") for n in ui["nodes"]}
    prompt = shrink(ui_to_api(ui, nodes.NODE_CLASS_MAPPINGS))
    before = run_with_saved_latent(prompt, comfy_dirs, "regional_before")
    enc = next(k for k, n in prompt.items() if n["class_type"] == "DreamO_EncodeReference"
               and titles[k].startswith(changed))
    other = {**prompt, enc: {**prompt[enc], "inputs": {**prompt[enc]["inputs"], "index": 3}}}
    after = run_with_saved_latent(other, comfy_dirs, "regional_after")
    width = before.shape[-1]
    mine = area_columns(prompt, titles, changed, width)
    theirs = area_columns(prompt, titles, "Right" if changed == "Left" else "Left", width)
    only_mine = [c for c in range(*mine) if not theirs[0] <= c < theirs[1]]
    only_theirs = [c for c in range(*theirs) if not mine[0] <= c < mine[1]]
    assert only_mine and only_theirs
    assert (after[..., only_mine] - before[..., only_mine]).abs().max() > 1e-3
    assert torch.equal(after[..., only_theirs], before[..., only_theirs])
    assert not torch.equal(after, before)
