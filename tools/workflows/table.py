"""The shipped workflows by name (``WORKFLOWS``: UI JSON each) and writing them to ``workflows/``."""

from __future__ import annotations

import json
from pathlib import Path

from .catalogue import SUBJECT_LORA, TURBO, V1_STACK, V11_STACK
from .recipes import Fuse, Ref, dreamo_workflow
from .regional import regional_workflow
from .toy import toy_workflow

OUT = Path(__file__).resolve().parents[2] / "workflows"

SUBJECT = Ref("dreamo_subject.png", "ip", 1, "Subject")
FACE = Ref("dreamo_face.png", "id", 1, "Face")
GARMENT_TIP = ("Garment: an image with a transparent background; its alpha is the mask (`invert_mask` on, since "
               "LoadImage's MASK is 1 - alpha).")
AUTO = "ComfyUI 0.33"
WORKFLOWS = {
    "dreamo_ip_single_subject": dreamo_workflow(
        "DreamO: one subject", "Puts the subject of one reference image (ip task) into a new scene; v1 LoRA stack, "
        "12 steps.", "a plush toy sitting on a wooden bench in a sunny park", [SUBJECT], V1_STACK, 12, 3.5,
        tips="Subject: best on a plain or removed background (connect a mask to the reference, 1 = keep)."),
    "dreamo_id_identity": dreamo_workflow(
        "DreamO: identity", "Keeps the identity of a face (id task) in a new picture; v1 LoRA stack, 12 steps.",
        "portrait of a woman as an astronaut on the moon, cinematic lighting", [FACE], V1_STACK, 12, 3.5,
        tips="Face: use a tight, upright face crop (the id task centre-crops 512 x 512); "
             "`dreamo_id_identity_auto_face_crop` does the crop with core nodes."),
    "dreamo_style": dreamo_workflow(
        "DreamO: style", "Draws a new subject in the style of a reference image (style task).",
        "generate a same style image. a lighthouse on a cliff at sunset",
        [Ref("dreamo_style.png", "style", 1, "Style")], V1_STACK, 12, 3.5),
    "dreamo_try_on": dreamo_workflow(
        "DreamO: try-on", "Dresses a person in a garment from a reference image (ip task with the garment's mask).",
        "a young man wearing the t-shirt, standing on a beach, full body photo",
        [Ref("dreamo_garment.png", "ip", 1, "Garment", mask=True)], V1_STACK, 12, 3.5, tips=GARMENT_TIP),
    "dreamo_multi_reference": dreamo_workflow(
        "DreamO: three subjects", "Combines three subjects (ip, indices 1, 2, 3) in one picture.",
        "a dog, a cat and a teapot together on a red sofa",
        [Ref("dreamo_subject.png", "ip", 1, "First subject"), Ref("dreamo_subject2.png", "ip", 2, "Second subject"),
         Ref("dreamo_subject3.png", "ip", 3, "Third subject")], V1_STACK, 12, 3.5),
    "dreamo_identity_try_on": dreamo_workflow(
        "DreamO: identity + try-on", "A person with the reference face (id, 1) wearing the reference garment (ip, 2).",
        "a woman wearing the dress, walking in a city street, full body photo",
        [FACE, Ref("dreamo_garment.png", "ip", 2, "Garment", mask=True)], V1_STACK, 12, 3.5, tips=GARMENT_TIP),
    "dreamo_v1_1_turbo_12_steps": dreamo_workflow(
        "DreamO v1.1: one subject, turbo", "DreamO v1.1 LoRA stack (turbo, SFT, DPO), FluxGuidance 4.5, 12 steps "
        "euler/simple, cfg 1.", "a plush toy sitting on a wooden bench in a sunny park", [SUBJECT], V11_STACK, 12, 4.5,
        pre_stack=(TURBO,)),
    "dreamo_two_subjects_left_right": dreamo_workflow(
        "DreamO: two subjects, left and right", "Two subjects placed by boxes: the first in the left half, the "
        "second in the right half (DreamO Reference Options).", "a dog and a cat sitting side by side on a sofa",
        [Ref("dreamo_subject.png", "ip", 1, "Left subject", options=[1.0, 0.0, 1.0, True, 0.0, 0.1, 0.5, 0.8],
             options_title="Place left"),
         Ref("dreamo_subject2.png", "ip", 2, "Right subject", options=[1.0, 0.0, 1.0, True, 0.5, 0.1, 0.5, 0.8],
             options_title="Place right")], V1_STACK, 12, 3.5),
    "dreamo_weak_style_strong_identity": dreamo_workflow(
        "DreamO: weak style, strong identity", "A face (identity at strength 1.5) in a style that only acts on the "
        "first 60% of the steps at strength 0.5.", "generate a same style image. portrait of a woman reading in a cafe",
        [Ref("dreamo_face.png", "id", 1, "Face", options=[1.5, 0.0, 1.0, False, 0.0, 0.0, 1.0, 1.0],
             options_title="Stronger identity"),
         Ref("dreamo_style.png", "style", 2, "Style", options=[0.5, 0.0, 0.6, False, 0.0, 0.0, 1.0, 1.0],
             options_title="Weaker, early style")], V1_STACK, 12, 3.5),
    "dreamo_regional_two_subjects": regional_workflow(),
    "dreamo_routing_preview": dreamo_workflow(
        "DreamO: routing preview", "Two subjects, plus an overlay of where each reference landed in the image.",
        "a dog and a cat together on a red sofa",
        [Ref("dreamo_subject.png", "ip", 1, "First subject"), Ref("dreamo_subject2.png", "ip", 2, "Second subject")],
        V1_STACK, 12, 3.5, preview=True),
    "dreamo_id_identity_auto_face_crop_comfyui_0_33": dreamo_workflow(
        "DreamO: identity, automatic face crop", "Identity from any photo: core nodes find the face (MediaPipe), "
        "crop it to 512 x 512 and remove its background (BiRefNet) before the id reference.",
        "portrait of a woman as an astronaut on the moon, cinematic lighting",
        [Ref("dreamo_face.png", "id", 1, "Face", auto="face")], V1_STACK, 12, 3.5, needs=AUTO,
        tips="No face found: the whole photo goes on (the id task then centre-crops it). Raise the crop's "
             "padding to keep more hair."),
    "dreamo_try_on_auto_mask_comfyui_0_33": dreamo_workflow(
        "DreamO: try-on, automatic garment mask", "Try-on from any garment photo: core Remove Background (BiRefNet) "
        "makes the garment's mask.", "a young man wearing the t-shirt, standing on a beach, full body photo",
        [Ref("dreamo_garment.png", "ip", 1, "Garment", auto="bg")], V1_STACK, 12, 3.5, needs=AUTO),
    "dreamo_identity_try_on_auto_comfyui_0_33": dreamo_workflow(
        "DreamO: identity + try-on, automatic preprocessing", "Face crop and garment mask made by core nodes, then "
        "a person with the face (id, 1) wearing the garment (ip, 2).",
        "a woman wearing the dress, walking in a city street, full body photo",
        [Ref("dreamo_face.png", "id", 1, "Face", auto="face"), Ref("dreamo_garment.png", "ip", 2, "Garment", auto="bg")],
        V1_STACK, 12, 3.5, needs=AUTO),
    "dreamo_subject_tuned_lora": dreamo_workflow(
        "DreamO: one subject + its tuned subject LoRA", "DreamTuner-style: a subject LoRA tuned on ONE image of the "
        "subject (python -m training.tune_subject) stacked on the DreamO LoRA, with the same image as the ip "
        "reference; v1 LoRA stack, 12 steps.", "a plush toy sitting on a wooden bench in a sunny park",
        [SUBJECT], [*V1_STACK, (SUBJECT_LORA, 1.0, "Subject LoRA (tuned on one image)")], 12, 3.5, note_height=520,
        tips="**Subject LoRA**: an ordinary FLUX LoRA (diffusers keys), so core *LoraLoaderModelOnly* loads it after "
             "*Load DreamO LoRA*. Make it with `python -m training.tune_subject subject.png --mask mask.png --out "
             "dreamo_subject_lora.safetensors --config training/configs/flux_dev.yaml --base dreamo.safetensors --base "
             "dreamo_cfg_distill.safetensors --base flux-turbo.safetensors --base "
             "dreamo_quality_lora_pos.safetensors@0.15 --base dreamo_quality_lora_neg.safetensors@-0.8` (the "
             "original files of this stack: tune on the stack you sample with). Use the same subject image here. "
             "Strength 1 = as tuned; lower it if the subject looks copied rather than placed."),
    "dreamo_background_fusion": dreamo_workflow(
        "DreamO: put a subject into your background", "DreamFuse-style background fusion as image-to-image: your "
        "background is the starting latent, the subject (ip, placed by the Reference Options box) is generated "
        "into it, and a latent noise mask keeps everything outside the box and its surroundings unchanged.",
        "a plush toy sitting on the wooden bench, soft evening light", [
            Ref("dreamo_subject.png", "ip", 1, "Subject", mask=True,
                options=[1.0, 0.0, 1.0, True, 0.3, 0.35, 0.4, 0.55], options_title="Place in the box")],
        V1_STACK, 12, 3.5, note_height=560,
        fuse=Fuse("dreamo_background.png", (1024, 1024), 0.85, (300, 350, 400, 550), 40),
        tips="**Settings that matter**\n"
             "- *Place in the box* (x, y, w, h as fractions) says where the subject goes; the mask's *Box size* / "
             "*Box position* are the same box in thousandths (0.3 -> 300): keep them equal.\n"
             "- *denoise* (sampler): 0.85 leaves room for the subject; lower keeps more of the original pixels "
             "inside the box (0.5-0.7: mostly a re-lighting), 1.0 ignores them.\n"
             "- *Box + surroundings* (grow, thousandths): the margin that may change around the box, so shadows and "
             "light blend in; 0 = only the box.\n"
             "- Bypass *Change only inside the mask* to let the whole picture be harmonised (it will drift from "
             "your background).\n"
             "- *Background size*: the output size (centre crop); set your picture's aspect."),
    "dreamo_toy": toy_workflow(),
}


def write_workflows(out: Path = OUT) -> None:
    """Every workflow as ``out/<name>.json`` (indent 1, UTF-8, a final newline)."""
    out.mkdir(exist_ok=True)
    for name, ui in WORKFLOWS.items():
        (out / f"{name}.json").write_text(json.dumps(ui, indent=1, ensure_ascii=False) + "\n")
