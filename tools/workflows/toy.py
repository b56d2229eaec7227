"""The recipe of the toy DreamO workflow (the CPU-trained toy of ``python -m training.demo``): two held-out glyphs,
each placed by DreamO Reference Options' box at the place its ``[ref#i]`` is captioned."""

from __future__ import annotations

from dreamo_core.spec import FLUX_DEV
from training.toy.constants import GUIDANCE as TOY_GUIDANCE
from training.toy.constants import REF_SIZE as TOY_REF_RES
from training.toy.constants import SAMPLE_STEPS as TOY_STEPS
from training.toy.constants import TARGET_SIZE as TOY_SIZE
from training.toy.constants import TRUE_CFG as TOY_CFG
from training.toy.comfyui import WORKFLOW_PLACES as TOY_PLACES
from training.toy.comfyui import WORKFLOW_PROMPT as TOY_PROMPT
from training.toy.world import place_box

from .layout import Graph
from .recipes import add_sampling


SHIFTS = f"{FLUX_DEV.max_shift:g} / {FLUX_DEV.base_shift:g}"  # ModelSamplingFlux's max / base shift, as the note says


def toy_workflow() -> dict:
    """The toy DreamO of ``python -m training.demo`` (two references, each in its captioned place's box: the toy
    was trained with ``data.placement: box``), pinned to the sampler settings under which
    ComfyUI, the ``dreamo`` generator and the trainer's sampler give the same image: euler + simple, 10 steps
    (1000 / 10 makes ``simple`` pick exactly the official linspace sigmas), ModelSamplingFlux with FLUX.1-dev's
    shifts (``FLUX_DEV.max_shift`` / ``base_shift``) at the image size (the generator's time shift), true CFG 3
    with an empty negative prompt (the negative pass gets no references), DreamO Text Encode for the [ref#i] rows."""
    g = Graph()
    g.note("\n".join([
        "## DreamO toy: two glyphs", "",
        "The toy DreamO trained on a CPU by this repository's trainer (`python -m training.toy.retrain`, "
        "training/README.md): 32 x 32 px scenes of random 4 x 4-cell glyphs, identities no words can name, stored 4x "
        f"({TOY_SIZE} px). Each reference is placed by DreamO Reference Options' box at the place its `[ref#i]` is "
        "captioned (the toy was trained that way: DreamFuse's positional affine). The same seed gives the same image "
        "as the `dreamo` generator and the "
        f"trainer's sampler (tests/nodes/test_toy_workflow.py) with these settings: euler, simple, {TOY_STEPS} steps, cfg "
        f"{TOY_CFG:g} (empty negative prompt: the negative pass runs without the references), "
        f"ModelSamplingFlux {SHIFTS} at {TOY_SIZE} x {TOY_SIZE}, reference resolution {TOY_REF_RES}, guidance "
        f"{TOY_GUIDANCE}.", "",
        "**Files**: `models/toy/runs/placed_route_s0.safetensors` (official DreamO format) → "
        "`models/loras/dreamo_toy.safetensors`. The toy base "
        "(`models/toy/base`, head width 32), its hashed-word text encoder and its codec have no ComfyUI loader: "
        "the three loaders here are stand-ins that `python -m training.demo` and the tests replace with the toy's (training/toy/comfyui.py); "
        "a stock ComfyUI cannot load the toy by itself.", "",
        "**Prompt**: `[ref#1]` / `[ref#2]` name the references, in any order; the toy knows 3 x 3 places (top "
        "left … bottom right; two glyphs: left and right column) and six backgrounds. A reference's box must be its "
        "captioned place (x, y, w, h in halves: top left = 0, 0, 0.5, 0.5). It has no style task."]),
        760, 330)
    unet = g.add("UNETLoader", ["dreamo_toy_base.safetensors", "default"], "models", "Toy base (stand-in loader)")
    clip = g.add("DualCLIPLoader", ["dreamo_toy_text.safetensors", "dreamo_toy_text.safetensors", "flux", "default"],
                 "prompt", "Toy text encoder (stand-in loader)")
    vae = g.add("VAELoader", ["dreamo_toy_codec.safetensors"], "models", "Toy codec (stand-in loader)")
    dreamo = g.add("DreamO_LoadLoRA", ["dreamo_toy.safetensors", 1.0, "None"], "models", "Toy DreamO LoRA + embeddings")
    g.link(unet, 0, dreamo, "model")
    shift = g.add("ModelSamplingFlux", [FLUX_DEV.max_shift, FLUX_DEV.base_shift, TOY_SIZE, TOY_SIZE], "models",
                  f"FLUX time shift at {TOY_SIZE} x {TOY_SIZE}")
    g.link(dreamo, 0, shift, "model")
    prev = None
    for k in (1, 2):
        img = g.add("LoadImage", [f"dreamo_toy_ref{k}.png", "image"], "refs", f"Glyph {k} image")
        enc = g.add("DreamO_EncodeReference", ["ip", k, TOY_REF_RES, False], "refs", f"Glyph {k} reference")
        g.link(img, 0, enc, "image")
        g.link(vae, 0, enc, "vae")
        if prev is not None:
            g.link(prev, 0, enc, "references")
        box = place_box(TOY_PLACES[k])
        opt = g.add("DreamO_ReferenceOptions", [k, 1.0, 0.0, 1.0, True, box.x, box.y, box.w, box.h], "refs",
                    f"Place [ref#{k}] at its captioned place")
        g.link(enc, 0, opt, "references")
        prev = opt
    pos = g.add("DreamO_TextEncode", [TOY_PROMPT, TOY_GUIDANCE], "prompt", "Prompt with [ref#1], [ref#2]")
    g.link(clip, 0, pos, "clip")
    g.link(dreamo, 0, pos, "model")
    g.link(prev, 0, pos, "references")
    neg = g.add("CLIPTextEncode", [""], "prompt", "Negative prompt (empty; runs without references)")
    g.link(clip, 0, neg, "clip")
    apply = g.add("DreamO_ApplyConditioning", [], "sample", "Apply DreamO")
    g.link(shift, 0, apply, "model")
    g.link(pos, 0, apply, "positive")
    g.link(prev, 0, apply, "references")
    latent = g.add("EmptySD3LatentImage", [TOY_SIZE, TOY_SIZE, 1], "sample", f"Output size (toy: {TOY_SIZE})")
    add_sampling(g, (apply, 0), apply, neg, latent, vae, [0, "fixed", TOY_STEPS, TOY_CFG, "euler", "simple", 1.0],
                 "Sampler (pinned)")
    ui = g.ui()
    ui["extra"]["dreamo"] = {"title": "DreamO toy: two glyphs", "description": "The CPU-trained toy DreamO of "
                             "training/: two glyphs no words can name, copied from their references into their "
                             "captioned places.", "needs": None}
    return ui
