"""The recipe of the regional DreamO workflow: two Apply DreamO Conditioning nodes, each with its own subject,
their prompts set to the left and right part of the picture and combined."""

from __future__ import annotations

from dataclasses import dataclass

from .catalogue import CLIP_L, DREAMO_EMBEDDINGS, DREAMO_LORA, FLUX_MODEL, FLUX_VAE, T5_XXL, V1_STACK
from .layout import Graph
from .recipes import add_sampling, files_section

TITLE = "DreamO: two subjects, each in its own region"
WHAT = ("Regional DreamO: the left subject's reference acts only in the left part of the picture and the right "
        "subject's only in the right part, each with its own prompt and options (two Apply DreamO Conditioning "
        "nodes, ConditioningSetAreaPercentage, ConditioningCombine); v1 LoRA stack, 12 steps.")
OVERLAP = 0.1  # the two areas overlap by this fraction of the width, so the seam is blended


@dataclass
class Region:
    image: str
    role: str  # "Left subject", "Right subject"
    prompt: str
    x: float  # area: left edge and width as fractions of the picture's width (full height)
    width: float


REGIONS = (Region("dreamo_subject.png", "Left subject", "a plush toy sitting on a wooden bench in a sunny park",
                  0.0, 0.5 + OVERLAP / 2),
           Region("dreamo_subject2.png", "Right subject", "a ceramic teapot standing on a wooden bench in a sunny park",
                  0.5 - OVERLAP / 2, 0.5 + OVERLAP / 2))


def regional_workflow() -> dict:
    """Load DreamO LoRA + the v1 stack once; per region: its image -> Encode Reference (ip, index 1: each region is
    its own DreamO prompt) and its prompt -> FluxGuidance -> Apply DreamO Conditioning -> its area; the areas
    combined into the sampler's positive."""
    g = Graph()
    g.note("\n".join([
        f"## {TITLE}", "", WHAT, "",
        "**Files** (the missing-models dialog offers the downloads; DreamO files from HF `ByteDance/DreamO`):",
        files_section(V1_STACK, [], False, False), "",
        "**How it works**: each Apply DreamO Conditioning puts its references and options into its own prompt, so "
        "after ConditioningSetAreaPercentage and ConditioningCombine every region keeps exactly its own. Each "
        "region is computed on its own part of the picture: number each region's references from 1, and give each "
        "region's prompt the whole scene plus its subject. The areas overlap a little "
        f"({OVERLAP:.0%} of the width) so the seam blends; move or resize them on the *area* nodes (fractions of the "
        "picture). For soft shapes use ConditioningSetMask instead (every region then sees the whole picture).", "",
        "**Prompt**: describe the result (for a style reference start it with `generate a same style image.`); "
        "leave the negative prompt empty: DreamO's LoRAs are cfg-distilled, keep cfg 1."]), 760, 400)
    unet = g.add("UNETLoader", [FLUX_MODEL, "default"], "models", "FLUX.1-dev model")
    clip = g.add("DualCLIPLoader", [CLIP_L, T5_XXL, "flux", "default"], "prompt", "FLUX text encoders (CLIP-L + T5-XXL)")
    vae = g.add("VAELoader", [FLUX_VAE], "models", "FLUX VAE")
    model = g.add("DreamO_LoadLoRA", [DREAMO_LORA, 1.0, DREAMO_EMBEDDINGS], "models", "DreamO LoRA + task/index embeddings")
    g.link(unet, 0, model, "model")
    for name, strength, ttl in V1_STACK:
        nxt = g.add("LoraLoaderModelOnly", [name, strength], "models", ttl)
        g.link(model, 0, nxt, "model")
        model = nxt
    areas = []
    for r in REGIONS:
        img = g.add("LoadImage", [r.image, "image"], "refs", f"{r.role} image")
        enc = g.add("DreamO_EncodeReference", ["ip", 1, 512, False], "refs", f"{r.role} reference")
        g.link(img, 0, enc, "image")
        g.link(vae, 0, enc, "vae")
        text = g.add("CLIPTextEncode", [r.prompt], "prompt", f"{r.role}: its prompt")
        g.link(clip, 0, text, "clip")
        guid = g.add("FluxGuidance", [3.5], "prompt", f"{r.role}: FLUX guidance")
        g.link(text, 0, guid, "conditioning")
        apply = g.add("DreamO_ApplyConditioning", [], "sample", f"Apply DreamO ({r.role.split()[0].lower()})")
        g.link(model, 0, apply, "model")  # the second Apply takes the first one's model (a chain works too)
        g.link(guid, 0, apply, "positive")
        g.link(enc, 0, apply, "references")
        area = g.add("ConditioningSetAreaPercentage", [r.width, 1.0, r.x, 0.0, 1.0], "sample", f"{r.role}: area")
        g.link(apply, 1, area, "conditioning")
        areas.append(area)
        model = apply
    both = g.add("ConditioningCombine", [], "sample", "Both regions")
    g.link(areas[0], 0, both, "conditioning_1")
    g.link(areas[1], 0, both, "conditioning_2")
    neg = g.add("CLIPTextEncode", [""], "prompt", "Negative prompt (ignored at cfg 1)")
    g.link(clip, 0, neg, "clip")
    latent = g.add("EmptySD3LatentImage", [1024, 768, 1], "sample", "Output size")
    add_sampling(g, (model, 0), both, neg, latent, vae, [42, "fixed", 12, 1.0, "euler", "simple", 1.0],
                 "Sampler (cfg 1)", positive_slot=0)
    ui = g.ui()
    ui["extra"]["dreamo"] = {"title": TITLE, "description": WHAT, "needs": None}
    return ui
