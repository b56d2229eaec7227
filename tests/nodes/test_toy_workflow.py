"""``workflows/dreamo_toy.json`` executes in ComfyUI on the repo's trained toy DreamO and gives, on the same seed,
the image of the ``dreamo`` generator (``DreamOGenerator`` on the two files) and of the trainer's own sampler.

Only the three loaders are replaced (tests/nodes/toy_comfy.py: the toy base in ComfyUI's FLUX class, the toy text
encoder as a CLIP, the toy codec as a VAE); Load DreamO LoRA reads ``models/toy/dreamo_toy.safetensors`` from a
ComfyUI ``loras`` folder, and Encode Reference, Text Encode, Apply, ModelSamplingFlux, KSampler, VAEDecode and
SaveImage are the real nodes. The workflow's own widgets (seed, steps, sampler, scheduler, shift, sizes) are used
unchanged except the seed, which the test varies.
"""

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import comfy_harness as h
from bench.comfy_harness.workflow_api import ui_to_api
from dreamo_core.generator.pipeline import ReferenceInput  # noqa: E402
from training.codec import decode_tokens  # noqa: E402
from training.sampling import euler_sample  # noqa: E402
from training.toy.codec import ToyCodec  # noqa: E402
from training.toy.constants import TOKEN_GRID as GRID  # noqa: E402
from training.toy.constants import TOY_DIR  # noqa: E402
from training.toy.constants import TRUE_CFG as TOY_CFG  # noqa: E402
from training.toy.evaluation import case_references  # noqa: E402
from training.toy.generate import load_toy_generator, load_trainer_model, toy_settings  # noqa: E402
from training.toy.world import HELD_OUT, Subject, reference_image, upscale  # noqa: E402

WORKFLOW = h.REPO / "workflows" / "dreamo_toy.json"
SUBJECTS = (HELD_OUT[0], HELD_OUT[3])  # two held-out subjects: distinct colours and shapes


def loader(output_type: str, make, widgets: dict):
    class Loader:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {k: ("STRING", {}) for k in widgets}}
        RETURN_TYPES, FUNCTION = (output_type,), "load"

        def load(self, **_):
            return (make(),)

    return Loader


@pytest.fixture
def toy_comfy(tmp_path, monkeypatch, toy_stand_ins):
    import folder_paths

    import nodes

    toy = toy_stand_ins
    fakes = {"UNETLoader": loader("MODEL", lambda: toy.toy_flux(TOY_DIR / "base"), {"unet_name": 0, "weight_dtype": 0}),
             "DualCLIPLoader": loader("CLIP", toy.ToyClip, {"clip_name1": 0, "clip_name2": 0, "type": 0, "device": 0}),
             "VAELoader": loader("VAE", toy.ToyComfyVAE, {"vae_name": 0})}
    for name, cls in fakes.items():
        monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, name, cls)
    loras, inp, out = tmp_path / "loras", tmp_path / "input", tmp_path / "output"
    for d in (loras, inp, out):
        d.mkdir()
    shutil.copy(TOY_DIR / "dreamo_toy.safetensors", loras / "dreamo_toy.safetensors")
    h.use_loras_folder(loras)
    for k, s in enumerate(SUBJECTS, start=1):
        Image.fromarray(upscale(reference_image(s))).save(inp / f"dreamo_toy_ref{k}.png")
    with h.io_directories(inp, out):
        yield out
    folder_paths.filename_list_cache.clear()


def run_workflow(out: Path, seed: int) -> tuple[np.ndarray, dict]:
    import execution

    import nodes

    prompt = ui_to_api(json.loads(WORKFLOW.read_text()), nodes.NODE_CLASS_MAPPINGS)
    sampler = next(n for n in prompt.values() if n["class_type"] == "KSampler")
    sampler["inputs"]["seed"] = seed
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("toy", prompt, None))
    assert valid, (error, node_errors)
    for old in out.glob("*.png"):
        old.unlink()
    executor = h.prompt_executor()
    executor.execute(prompt, "toy", {}, outputs)
    assert executor.success, executor.status_messages[-1:]
    (saved,) = sorted(out.glob("DreamO_0*.png"))
    return np.asarray(Image.open(saved)).astype(np.float64) / 255.0, prompt


def to_png_levels(image: torch.Tensor) -> np.ndarray:
    """(H, W, 3) in [0, 1] -> what SaveImage writes (8-bit, ComfyUI rounds by clip(255 x) then uint8)."""
    return np.clip(255.0 * image.numpy(), 0, 255).astype(np.uint8).astype(np.float64) / 255.0


@pytest.mark.parametrize("seed", [0, 7])
def test_toy_workflow_equals_generator_and_trainer_sampler(toy_comfy, seed):
    comfy_img, prompt = run_workflow(toy_comfy, seed)
    text = next(n for n in prompt.values() if n["class_type"] == "DreamO_TextEncode")["inputs"]["text"]
    refs = [torch.from_numpy(upscale(reference_image(s))).float() / 255.0 for s in SUBJECTS]
    steps = next(n for n in prompt.values() if n["class_type"] == "KSampler")["inputs"]["steps"]
    gen = load_toy_generator().generate(text, [ReferenceInput(r, "ip", k) for k, r in enumerate(refs, start=1)],
                                        toy_settings(seed, steps))
    model = load_trainer_model()

    class Case:  # the trainer sampler's references, from the same images
        def __init__(self):
            self.scene = type("S", (), {"references": [reference_image(s) for s in SUBJECTS]})()
            self.subjects = list(SUBJECTS)

    cfg = next(n for n in prompt.values() if n["class_type"] == "KSampler")["inputs"]["cfg"]
    z = euler_sample(model, GRID, case_references([Case()], ToyCodec()), [text], steps=steps, seed=seed,
                     true_cfg=cfg, negative_prompt="")
    trainer = decode_tokens(ToyCodec(), z, GRID)[0]
    assert comfy_img.shape == (128, 128, 3)
    assert (gen - trainer).abs().max() < 2e-4  # float agreement of the two torch paths
    # ComfyUI saves 8 bits: compare with the generator's image quantised the same way; float noise may flip a
    # level where a value sits on a rounding edge, so allow one level on a few pixels only
    diff = np.abs(comfy_img - to_png_levels(gen))
    assert diff.max() <= 1.5 / 255 and (diff > 0).mean() < 0.01, (diff.max() * 255, (diff > 0).mean())
    other, _ = run_workflow(toy_comfy, seed + 1)
    assert np.abs(other - comfy_img).max() > 0.05  # a different seed is a different image


def test_the_workflow_pins_the_settings_the_paths_share():
    ui = json.loads(WORKFLOW.read_text())
    by_type = {n["type"]: n["widgets_values"] for n in ui["nodes"]}
    assert by_type["KSampler"][2:6] == [10, TOY_CFG, "euler", "simple"]  # 1000 / 10 steps: simple = official sigmas
    assert by_type["CLIPTextEncode"] == [""]  # the true-CFG negative prompt of the generator and the sampler
    assert by_type["ModelSamplingFlux"] == [1.15, 0.5, 128, 128]
    assert by_type["EmptySD3LatentImage"][:2] == [128, 128]
    assert by_type["DreamO_EncodeReference"][2] == 96 and by_type["DreamO_TextEncode"][1] == 3.5
    assert Subject("red", "circle", "solid") == SUBJECTS[0]  # the workflow's references: held-out subjects
