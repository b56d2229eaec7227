"""``workflows/dreamo_toy.json`` executes in ComfyUI on the repo's trained toy DreamO and gives, on the same seed,
the image of the ``dreamo`` generator (``DreamOGenerator`` on the two files) and of the trainer's own model.

Only the three loaders are the toy's (``training.toy.comfyui``: the toy base in ComfyUI's FLUX class, the toy text
encoder as a CLIP, the toy codec as a VAE, registered under their own node names); Load DreamO LoRA reads the toy's
exported file (``models/toy/runs/placed_route_s0.safetensors``) from a ComfyUI ``loras`` folder, and Encode
Reference, Reference Options (each glyph's box), Text Encode, Apply, ModelSamplingFlux, KSampler, VAEDecode and
SaveImage are the real nodes. The workflow's own widgets are used unchanged except the seed, which the test varies.
"""

import json

import numpy as np
import pytest
import torch

from dreamo_core.generator.pipeline import ReferenceInput
from training.toy.comfyui import WORKFLOW, WORKFLOW_PLACES, run_toy_workflow, workflow_case
from training.toy.constants import MAIN_EXPORT, REF_SIZE, TOY_DIR
from training.toy.constants import TRUE_CFG as TOY_CFG
from training.toy.evaluation import generate
from training.toy.generate import load_toy_generator, load_trainer_model, toy_settings
from training.toy.world import HELD_OUT, place_box, upscale

GLYPHS = {1: HELD_OUT[0], 2: HELD_OUT[3]}  # the workflow's two references: held-out glyphs


def to_png_levels(image: torch.Tensor) -> np.ndarray:
    """(H, W, 3) in [0, 1] -> what SaveImage writes (8-bit, ComfyUI rounds by clip(255 x) then uint8)."""
    return np.clip(255.0 * image.numpy(), 0, 255).astype(np.uint8).astype(np.float64) / 255.0


def comfy_image(tmp_path, seed: int) -> tuple[np.ndarray, dict]:
    return run_toy_workflow(WORKFLOW, TOY_DIR / "base", MAIN_EXPORT, {k: g.pixels() for k, g in GLYPHS.items()}, seed,
                            tmp_path / f"seed{seed}")


@pytest.mark.parametrize("seed", [0, 7])
def test_toy_workflow_equals_generator_and_trainer_sampler(tmp_path, seed):
    comfy_img, prompt = comfy_image(tmp_path, seed)
    text = next(n for n in prompt.values() if n["class_type"] == "DreamO_TextEncode")["inputs"]["text"]
    steps = next(n for n in prompt.values() if n["class_type"] == "KSampler")["inputs"]["steps"]
    refs = [ReferenceInput(torch.from_numpy(upscale(GLYPHS[k].pixels())).float() / 255.0, "ip", k,
                           box=place_box(WORKFLOW_PLACES[k])) for k in (1, 2)]
    gen = load_toy_generator().generate(text, refs, toy_settings(seed, steps))
    case = workflow_case(GLYPHS)
    assert case.prompt() == text
    trainer = generate(load_trainer_model(), [case], "refs", True, seed=0, steps=steps, numbers=[seed])[0]
    assert comfy_img.shape == (128, 128, 3)
    gen_native = gen.numpy().reshape(32, 4, 32, 4, 3).mean(axis=(1, 3))
    assert np.abs(gen_native - trainer).max() < 2e-4  # float agreement of the two torch paths (noise seed = seed)
    # ComfyUI saves 8 bits: compare with the generator's image quantised the same way; float noise may flip a
    # level where a value sits on a rounding edge, so allow one level on a few pixels only
    diff = np.abs(comfy_img - to_png_levels(gen))
    assert diff.max() <= 1.5 / 255 and (diff > 0).mean() < 0.01, (diff.max() * 255, (diff > 0).mean())
    other, _ = comfy_image(tmp_path, seed + 1)
    assert np.abs(other - comfy_img).max() > 0.05  # a different seed is a different image


def test_the_workflow_pins_the_settings_the_paths_share():
    ui = json.loads(WORKFLOW.read_text())
    by_type: dict[str, list] = {}
    for n in ui["nodes"]:
        by_type.setdefault(n["type"], []).append(n["widgets_values"])
    assert by_type["KSampler"][0][2:6] == [10, TOY_CFG, "euler", "simple"]  # 1000 / 10: simple = official sigmas
    assert by_type["CLIPTextEncode"] == [[""]]  # the true-CFG negative prompt of the generator and the sampler
    assert by_type["ModelSamplingFlux"] == [[1.15, 0.5, 128, 128]]
    assert by_type["EmptySD3LatentImage"][0][:2] == [128, 128]
    assert [e[2] for e in by_type["DreamO_EncodeReference"]] == [REF_SIZE] * 2
    assert by_type["DreamO_TextEncode"][0][1] == 3.5
    boxes = {o[0]: o[4:] for o in by_type["DreamO_ReferenceOptions"]}
    for k, place in WORKFLOW_PLACES.items():  # each reference boxed at its captioned place
        b = place_box(place)
        assert boxes[k] == [True, b.x, b.y, b.w, b.h]
