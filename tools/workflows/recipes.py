"""The DreamO-on-FLUX.1-dev workflow recipe (``dreamo_workflow``) and its parts: references (``Ref``), background
fusion (``Fuse``), the note's file list, sampling."""

from __future__ import annotations

from dataclasses import dataclass

from .catalogue import (
    BACKGROUND_REMOVER,
    CLIP_L,
    DREAMO_EMBEDDINGS,
    DREAMO_LORA,
    FACE_MODEL,
    FLUX_MODEL,
    FLUX_VAE,
    MODEL_FILES,
    SUBJECT_LORA,
    T5_XXL,
)
from .layout import Graph


@dataclass
class Ref:
    """One reference: image file, task, index, what it is (titles), optional mask / options / preprocessing."""

    image: str
    task: str
    index: int
    role: str  # e.g. "Subject", "Face", "Garment"
    mask: bool = False  # LoadImage's alpha as the mask (invert_mask on)
    options: list | None = None  # DreamO Reference Options: [strength, start, end, use_box, x, y, w, h]
    options_title: str | None = None
    auto: str | None = None  # "bg": core RemoveBackground mask; "face": core face crop + background removal


# the files every DreamO workflow loads, as the note lists them (files of one folder on one line)
BASE_FILES = ((FLUX_MODEL,), (CLIP_L, T5_XXL), (FLUX_VAE,), (DREAMO_LORA, DREAMO_EMBEDDINGS))


def files_section(stack: list, pre_stack: list, auto: bool, face: bool) -> str:
    """The note's list of model files, each with its ``models/`` folder (from the catalogue where it has one)."""
    rows = [(", ".join(names), MODEL_FILES[names[0]][0]) for names in BASE_FILES]
    rows += [(name, "loras") for name, _, _ in [*pre_stack, *stack]]
    if auto:
        rows.append((BACKGROUND_REMOVER, MODEL_FILES[BACKGROUND_REMOVER][0]))
    if face:
        rows.append((f"{FACE_MODEL} (MediaPipe Face Landmarker; use your file's name)", "detection"))
    rows = [(f"{n} (yours: made by `python -m training.tune_subject`, see training/README.md)", d)
            if n == SUBJECT_LORA else (n, d) for n, d in rows]
    return "\n".join(f"- `{name}` → `models/{folder}/`" for name, folder in rows)


@dataclass
class Fuse:
    """Background fusion (img2img): the background image as the starting latent, sampled at ``denoise``; the
    noise mask is ``box`` (x, y, w, h in thousandths of the picture, on a 1000 x 1000 mask canvas that
    SetLatentNoiseMask stretches to the latent) grown by ``grow`` thousandths (the box's surroundings)."""

    image: str
    size: tuple[int, int]  # the background is scaled (centre crop) to this (width, height)
    denoise: float
    box: tuple[int, int, int, int]
    grow: int


def add_fusion_latent(g: Graph, vae: int, fuse: Fuse) -> int:
    """Background -> scale -> VAE encode -> noise mask from the box; returns the LATENT node."""
    bg = g.add("LoadImage", [fuse.image, "image"], "background", "Background image")
    scale = g.add("ImageScale", ["lanczos", *fuse.size, "center"], "background", "Background size (= output)")
    g.link(bg, 0, scale, "image")
    enc = g.add("VAEEncode", [], "background", "Background as the starting latent")
    g.link(scale, 0, enc, "pixels")
    g.link(vae, 0, enc, "vae")
    canvas = g.add("SolidMask", [0.0, 1000, 1000], "background", "Mask canvas (1000 x 1000 = the picture)")
    x, y, w, h = fuse.box
    box = g.add("SolidMask", [1.0, w, h], "background", "Box size (thousandths, = the placement box)")
    comp = g.add("MaskComposite", [x, y, "add"], "background", "Box position (thousandths)")
    g.link(canvas, 0, comp, "destination")
    g.link(box, 0, comp, "source")
    grow = g.add("GrowMask", [fuse.grow, True], "background", "Box + surroundings")
    g.link(comp, 0, grow, "mask")
    noise = g.add("SetLatentNoiseMask", [], "background", "Change only inside the mask")
    g.link(enc, 0, noise, "samples")
    g.link(grow, 0, noise, "mask")
    return noise


def add_sampling(g: Graph, model: tuple[int, int], positive: int, negative: int, latent: int, vae: int,
                 sampler: list, title: str, positive_slot: int = 1) -> int:
    """KSampler (``sampler`` = its widget values) -> VAEDecode -> SaveImage in the sample group; returns the
    decode node. ``model`` is (node, output slot); ``positive`` is Apply's output 1 (or ``positive_slot``)."""
    ks = g.add("KSampler", sampler, "sample", title)
    g.link(model[0], model[1], ks, "model")
    g.link(positive, positive_slot, ks, "positive")
    g.link(negative, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    dec = g.add("VAEDecode", [], "sample", "Decode")
    g.link(ks, 0, dec, "samples")
    g.link(vae, 0, dec, "vae")
    save = g.add("SaveImage", ["DreamO"], "sample", "Save result")
    g.link(dec, 0, save, "images")
    return dec


def dreamo_workflow(title: str, what: str, prompt: str, refs: list[Ref], stack: list, steps: int, guidance: float,
          pre_stack: tuple = (), preview: bool = False, needs: str | None = None, tips: str = "",
          fuse: Fuse | None = None, note_height: int | None = None) -> dict:
    """refs chained in order; preview adds the routing recorder and preview; needs: the ComfyUI it requires;
    fuse: img2img on a background (starting latent, denoise, noise mask) instead of an empty latent."""
    g = Graph()
    auto = any(r.auto for r in refs)
    face = any(r.auto == "face" for r in refs)
    style = prompt.startswith("generate a same style image.")
    lines = [f"## {title}", "", what, ""]
    if needs:
        lines += [f"**Needs {needs}** (core preprocessing nodes); on older ComfyUI use the workflow without "
                  "`auto` in its name.", ""]
    lines += ["**Files** (the missing-models dialog offers the downloads; DreamO files from HF `ByteDance/DreamO`):",
              files_section(stack, list(pre_stack), auto, face), "",
              "**Prompt**: describe the result; "
              + ("it must start with `generate a same style image.` (the style trigger)." if style else
                 "for a style reference start it with `generate a same style image.`.")
              + " Leave the negative prompt empty: DreamO's LoRAs are cfg-distilled, keep cfg 1.",
              ]
    if tips:
        lines += ["", tips]
    g.note("\n".join(lines), 760, note_height or (380 if needs else 330))

    unet = g.add("UNETLoader", [FLUX_MODEL, "default"], "models", "FLUX.1-dev model")
    clip = g.add("DualCLIPLoader", [CLIP_L, T5_XXL, "flux", "default"], "prompt",
                 "FLUX text encoders (CLIP-L + T5-XXL)")
    vae = g.add("VAELoader", [FLUX_VAE], "models", "FLUX VAE")
    model = unet
    for name, strength, ttl in pre_stack:  # LoRAs before DreamO's (the order does not change the sum)
        nxt = g.add("LoraLoaderModelOnly", [name, strength], "models", ttl)
        g.link(model, 0, nxt, "model")
        model = nxt
    dreamo = g.add("DreamO_LoadLoRA", [DREAMO_LORA, 1.0, DREAMO_EMBEDDINGS], "models",
                   "DreamO LoRA + task/index embeddings")
    g.link(model, 0, dreamo, "model")
    model = dreamo
    for name, strength, ttl in stack:
        nxt = g.add("LoraLoaderModelOnly", [name, strength], "models", ttl)
        g.link(model, 0, nxt, "model")
        model = nxt
    bg_model = face_model = None
    if auto:
        bg_model = g.add("LoadBackgroundRemovalModel", [BACKGROUND_REMOVER], "refs", "Background remover (BiRefNet)")
    if face:
        face_model = g.add("LoadMediaPipeFaceLandmarker", [FACE_MODEL], "refs", "Face detector (MediaPipe)")
    prev = None
    for r in refs:
        img = g.add("LoadImage", [r.image, "image"], "refs", f"{r.role} image")
        image_src, mask_src = (img, 0), ((img, 1) if r.mask else None)
        if r.auto == "face":
            det = g.add("MediaPipeFaceLandmarker", ["short", 1, 0.5, "empty"], "refs", "Find the face")
            g.link(face_model, 0, det, "face_detection_model")
            g.link(img, 0, det, "image")
            crop = g.add("CropByBBoxes", [512, 512, 64, "pad"], "refs", "Crop the face (512 x 512)")
            g.link(img, 0, crop, "image")
            g.link(det, 1, crop, "bboxes")
            image_src = (crop, 0)
        if r.auto:
            rm = g.add("RemoveBackground", [], "refs", f"{r.role} foreground mask")
            g.link(bg_model, 0, rm, "bg_removal_model")
            g.link(*image_src, rm, "image")
            mask_src = (rm, 0)
        enc = g.add("DreamO_EncodeReference", [r.task, r.index, 512, r.mask], "refs", f"{r.role} reference")
        g.link(*image_src, enc, "image")
        g.link(vae, 0, enc, "vae")
        if mask_src:
            g.link(*mask_src, enc, "mask")
        if prev is not None:
            g.link(prev, 0, enc, "references")
        prev = enc
        if r.options:
            opt = g.add("DreamO_ReferenceOptions", [r.index, *r.options], "refs", r.options_title)
            g.link(prev, 0, opt, "references")
            prev = opt
    pos_txt = g.add("CLIPTextEncode", [prompt], "prompt", "Prompt")
    neg_txt = g.add("CLIPTextEncode", [""], "prompt", "Negative prompt (ignored at cfg 1)")
    g.link(clip, 0, pos_txt, "clip")
    g.link(clip, 0, neg_txt, "clip")
    guid = g.add("FluxGuidance", [guidance], "prompt", "FLUX guidance")
    g.link(pos_txt, 0, guid, "conditioning")
    apply = g.add("DreamO_ApplyConditioning", [], "sample", "Apply DreamO")
    g.link(model, 0, apply, "model")
    g.link(guid, 0, apply, "positive")
    if prev is not None:
        g.link(prev, 0, apply, "references")
    if fuse is None:
        latent = g.add("EmptySD3LatentImage", [1024, 1024, 1], "sample", "Output size")
    else:
        latent = add_fusion_latent(g, vae, fuse)
    sampler_model = apply
    if preview:
        sampler_model = g.add("DreamO_RoutingRecorder", ["all", 0.0, 1.0], "sample", "Record routing")
        g.link(apply, 0, sampler_model, "model")
    denoise = 1.0 if fuse is None else fuse.denoise
    dec = add_sampling(g, (sampler_model, 0), apply, neg_txt, latent, vae,
                       [42, "fixed", steps, 1.0, "euler", "simple", denoise],
                       "Sampler (cfg 1)" if fuse is None else f"Sampler (cfg 1, denoise {denoise:g})")
    if preview:
        pv = g.add("DreamO_RoutingPreview", [0.6], "sample", "Where each reference landed")
        g.link(sampler_model, 1, pv, "routing")
        g.link(dec, 0, pv, "image")
        save_maps = g.add("SaveImage", ["DreamO_routing"], "sample", "Save routing overlay")
        g.link(pv, 1, save_maps, "images")
    ui = g.ui()
    ui["extra"]["dreamo"] = {"title": title, "description": what, "needs": needs}
    return ui
