"""Writes the example workflows in workflows/ (ComfyUI frontend UI format, version 0.4).

Run: python tools/build_workflows.py   (then python tools/render_workflow.py workflows/*.json)

Every workflow is laid out left to right: a node's column is one past the deepest node that feeds it (so
every link runs rightwards), nodes are stacked in bands (models, prompt, references, sampling), one group per
band, a Markdown note on top. Node sizes are estimated generously from their sockets and widgets (the title
bar, TITLE_H, sits above ``pos`` as in LiteGraph), so no two node rectangles overlap
(tests/workflows/test_layout.py; tests/browser/ checks the sizes the real frontend gives them too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "workflows"
TITLE_H = 30  # LiteGraph's title bar, drawn above a node's pos
SLOT_H, WIDGET_H, TEXT_H, IMAGE_H = 22, 28, 150, 240  # per socket row, widget, multiline text, image preview
GAP_X, GAP_Y = 70, 40  # between columns, between nodes of a column
GROUP_PAD, GROUP_HEAD = 20, 46  # group padding around its nodes and its title band
BAND_GAP = 40  # between two groups
NOTE_TYPES = ("MarkdownNote", "Note")  # frontend-only nodes (never sent to the server)

HF_DREAMO = "https://huggingface.co/ByteDance/DreamO/resolve/main/"
# name -> (models/ folder, download url): the frontend's missing-models dialog (properties.models per node)
MODEL_FILES = {
    "flux1-dev.safetensors": ("diffusion_models",
                              "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors"),
    "clip_l.safetensors": ("text_encoders",
                           "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors"),
    "t5xxl_fp16.safetensors": ("text_encoders",
                               "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors"),
    "ae.safetensors": ("vae", "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/"
                              "split_files/vae/ae.safetensors"),
    "dreamo_comfyui.safetensors": ("loras", HF_DREAMO + "comfyui/dreamo_comfyui.safetensors"),
    "embedding.safetensors": ("loras", HF_DREAMO + "embedding.safetensors"),
    "dreamo_cfg_distill_comfyui.safetensors": ("loras", HF_DREAMO + "comfyui/dreamo_cfg_distill_comfyui.safetensors"),
    "dreamo_quality_lora_pos_comfyui.safetensors": ("loras",
                                                    HF_DREAMO + "comfyui/dreamo_quality_lora_pos_comfyui.safetensors"),
    "dreamo_quality_lora_neg_comfyui.safetensors": ("loras",
                                                    HF_DREAMO + "comfyui/dreamo_quality_lora_neg_comfyui.safetensors"),
    "dreamo_sft_lora.safetensors": ("loras", HF_DREAMO + "v1.1/dreamo_sft_lora.safetensors"),
    "dreamo_dpo_lora.safetensors": ("loras", HF_DREAMO + "v1.1/dreamo_dpo_lora.safetensors"),
    # saved under the name the workflow uses (the file is diffusion_pytorch_model.safetensors upstream)
    "flux-turbo.safetensors": ("loras", "https://huggingface.co/alimama-creative/FLUX.1-Turbo-Alpha/resolve/main/"
                                        "diffusion_pytorch_model.safetensors"),
    "birefnet.safetensors": ("background_removal",
                             "https://huggingface.co/Comfy-Org/BiRefNet/resolve/main/background_removal/birefnet.safetensors"),
}
# The MediaPipe Face Landmarker file for core's LoadMediaPipeFaceLandmarker (models/detection): we know of no
# official download URL, so it gets no properties.models entry; the note says what to put there.
FACE_MODEL = "face_landmarker.safetensors"
# The subject LoRA is the user's own (python -m training.tune_subject): no download either.
SUBJECT_LORA = "dreamo_subject_lora.safetensors"
NO_DOWNLOAD = (FACE_MODEL, SUBJECT_LORA)

# type: (inputs [(name, type)], outputs [(name, type)], widget kinds ("w" one line, "text", "image"), width)
SOCKETS = {
    "UNETLoader": ([], [("MODEL", "MODEL")], "ww", 330),
    "DualCLIPLoader": ([], [("CLIP", "CLIP")], "wwww", 330),
    "VAELoader": ([], [("VAE", "VAE")], "w", 330),
    "LoraLoaderModelOnly": ([("model", "MODEL")], [("MODEL", "MODEL")], "ww", 380),
    "DreamO_LoadLoRA": ([("model", "MODEL")], [("MODEL", "MODEL")], "www", 340),
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")], "wwimage", 320),
    "DreamO_EncodeReference": ([("image", "IMAGE"), ("vae", "VAE"), ("mask", "MASK"), ("references", "DREAMO_REFS")],
                               [("references", "DREAMO_REFS")], "wwww", 320),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], "text", 420),
    "FluxGuidance": ([("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")], "w", 300),
    "DreamO_ApplyConditioning": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("references", "DREAMO_REFS")],
                                 [("model", "MODEL"), ("positive", "CONDITIONING")], "", 300),
    "EmptySD3LatentImage": ([], [("LATENT", "LATENT")], "www", 300),
    "KSampler": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT")], [("LATENT", "LATENT")], "wwwwwww", 320),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")], "", 240),
    "SaveImage": ([("images", "IMAGE")], [], "wimage", 340),
    "DreamO_ReferenceOptions": ([("references", "DREAMO_REFS")], [("references", "DREAMO_REFS")], "wwwwwwww", 320),
    "DreamO_TextEncode": ([("clip", "CLIP"), ("model", "MODEL"), ("references", "DREAMO_REFS")],
                          [("CONDITIONING", "CONDITIONING")], "textw", 420),
    "ModelSamplingFlux": ([("model", "MODEL")], [("MODEL", "MODEL")], "wwww", 300),
    "DreamO_RoutingRecorder": ([("model", "MODEL")], [("model", "MODEL"), ("routing", "DREAMO_ROUTING")], "www", 320),
    "DreamO_RoutingPreview": ([("routing", "DREAMO_ROUTING"), ("image", "IMAGE")],
                              [("masks", "MASK"), ("overlay", "IMAGE")], "w", 300),
    # core preprocessing (ComfyUI 0.33: comfy_extras/nodes_bg_removal.py, nodes_mediapipe.py, nodes_sdpose.py)
    "LoadBackgroundRemovalModel": ([], [("bg_model", "BACKGROUND_REMOVAL")], "w", 330),
    "RemoveBackground": ([("bg_removal_model", "BACKGROUND_REMOVAL"), ("image", "IMAGE")], [("mask", "MASK")], "", 300),
    "LoadMediaPipeFaceLandmarker": ([], [("FACE_DETECTION_MODEL", "FACE_DETECTION_MODEL")], "w", 330),
    "MediaPipeFaceLandmarker": ([("face_detection_model", "FACE_DETECTION_MODEL"), ("image", "IMAGE")],
                                [("face_landmarks", "FACE_LANDMARKS"), ("bboxes", "BOUNDING_BOX")], "wwww", 330),
    "CropByBBoxes": ([("image", "IMAGE"), ("bboxes", "BOUNDING_BOX")], [("IMAGE", "IMAGE")], "wwww", 320),
    # img2img background fusion (core): the background as the starting latent, a box mask limiting the change
    "ImageScale": ([("image", "IMAGE")], [("IMAGE", "IMAGE")], "wwww", 320),
    "VAEEncode": ([("pixels", "IMAGE"), ("vae", "VAE")], [("LATENT", "LATENT")], "", 240),
    "SolidMask": ([], [("MASK", "MASK")], "www", 300),
    "MaskComposite": ([("destination", "MASK"), ("source", "MASK")], [("MASK", "MASK")], "www", 300),
    "GrowMask": ([("mask", "MASK")], [("MASK", "MASK")], "ww", 300),
    "SetLatentNoiseMask": ([("samples", "LATENT"), ("mask", "MASK")], [("LATENT", "LATENT")], "", 300),
    "MarkdownNote": ([], [], "", 0),
}
# core node types the auto-preprocessing workflows need (absent from ComfyUI 0.3.64)
PREPROCESSING_TYPES = ("LoadBackgroundRemovalModel", "RemoveBackground", "LoadMediaPipeFaceLandmarker",
                       "MediaPipeFaceLandmarker", "CropByBBoxes")

# The LoRA stacks: (file, strength, title). Titles say which LoRA it is, so the four v1 loaders differ.
CFG_DISTILL = ("dreamo_cfg_distill_comfyui.safetensors", 1.0, "DreamO cfg-distill LoRA")
TURBO = ("flux-turbo.safetensors", 1.0, "FLUX Turbo LoRA (12 steps)")
V1_STACK = [CFG_DISTILL, TURBO,
            ("dreamo_quality_lora_pos_comfyui.safetensors", 0.15, "DreamO quality LoRA (positive, +0.15)"),
            ("dreamo_quality_lora_neg_comfyui.safetensors", -0.8, "DreamO quality LoRA (negative, -0.8)")]
V11_STACK = [CFG_DISTILL, ("dreamo_sft_lora.safetensors", 1.0, "DreamO v1.1 SFT LoRA"),
             ("dreamo_dpo_lora.safetensors", 1.25, "DreamO v1.1 DPO LoRA")]
GROUPS = {"models": ("Models: FLUX.1-dev + DreamO LoRA stack", "#3f5159"),
          "prompt": ("Prompt", "#4a5a3f"), "refs": ("References", "#3f4f6b"),
          "background": ("Background and where it may change", "#4f3f6b"),
          "sample": ("Sample, decode, save", "#5a4a3f")}


@dataclass
class Node:
    id: int
    type: str
    widgets: list
    band: str | None
    title: str | None
    width: int
    height: int
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    models: list = field(default_factory=list)
    pos: tuple[int, int] = (0, 0)


def body_height(type_: str) -> int:
    ins, outs, kinds, _ = SOCKETS[type_]
    h = SLOT_H * max(len(ins), len(outs)) + 10
    i = 0
    while i < len(kinds):
        for kind, height in (("image", IMAGE_H), ("text", TEXT_H), ("w", WIDGET_H)):
            if kinds.startswith(kind, i):
                h += height
                i += len(kind)
                break
    return h


class Graph:
    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.links: list[list] = []

    def add(self, type_: str, widgets: list, band: str | None, title: str | None = None) -> int:
        ins, outs, _, width = SOCKETS[type_]
        node = Node(len(self.nodes) + 1, type_, widgets, band, title, width, body_height(type_),
                    [{"name": n, "type": t, "link": None} for n, t in ins],
                    [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outs)])
        node.models = [{"name": v, "url": MODEL_FILES[v][1], "directory": MODEL_FILES[v][0]}
                       for v in widgets if isinstance(v, str) and v in MODEL_FILES]
        self.nodes.append(node)
        return node.id

    def note(self, text: str, width: int, height: int) -> int:
        nid = self.add("MarkdownNote", [text], None, "About this workflow")
        self.nodes[nid - 1].width, self.nodes[nid - 1].height = width, height
        return nid

    def link(self, src: int, slot: int, dst: int, name: str) -> None:
        lid = len(self.links) + 1
        s, d = self.nodes[src - 1], self.nodes[dst - 1]
        inp = next(i for i, x in enumerate(d.inputs) if x["name"] == name)
        typ = s.outputs[slot]["type"]
        self.links.append([lid, src, slot, dst, inp, typ])
        s.outputs[slot]["links"].append(lid)
        d.inputs[inp]["link"] = lid

    # -- layout -------------------------------------------------------------------------------------------
    def columns(self) -> dict[int, int]:
        """Column per node: one past its deepest input (links go rightwards); loaders in column 0, the empty
        latent just left of the sampler."""
        preds: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        succs: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for _, src, _, dst, _, _ in self.links:
            preds[dst].append(src)
            succs[src].append(dst)
        col: dict[int, int] = {}

        def depth(nid: int) -> int:
            if nid not in col:
                col[nid] = 1 + max((depth(p) for p in preds[nid]), default=-1)
            return col[nid]

        for n in self.nodes:
            depth(n.id)
        for n in self.nodes:  # a source of the sampling band (the latent) sits just before its consumer
            if not preds[n.id] and succs[n.id] and n.band == "sample":
                col[n.id] = max(0, min(col[s] for s in succs[n.id]) - 1)
        return col

    def layout(self) -> list[dict]:
        """Positions every node; returns the groups (one per band, in band order)."""
        col = self.columns()
        graph_nodes = [n for n in self.nodes if n.band is not None]
        n_cols = 1 + max(col[n.id] for n in graph_nodes)
        widths = [max((n.width for n in graph_nodes if col[n.id] == c), default=200) for c in range(n_cols)]
        xs = [sum(widths[:c]) + GAP_X * c for c in range(n_cols)]
        preds: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for _, src, _, dst, _, _ in self.links:
            preds[dst].append(src)
        notes = [n for n in self.nodes if n.band is None]
        top = 0
        for n in notes:  # above everything
            n.pos = (0, top + TITLE_H)
            top += TITLE_H + n.height + BAND_GAP
        groups = []
        stacked = [b for b in GROUPS if b != "sample"]
        band_top = {b: 0 for b in GROUPS}
        y = top + GROUP_HEAD + GROUP_PAD
        for band in stacked:
            members = [n for n in graph_nodes if n.band == band]
            if not members:
                continue
            band_top[band] = y
            bottom = self.place_band(members, col, xs, preds, y)
            y = bottom + GROUP_PAD + BAND_GAP + GROUP_HEAD + GROUP_PAD
        sample = [n for n in graph_nodes if n.band == "sample"]
        self.place_band(sample, col, xs, preds, top + GROUP_HEAD + GROUP_PAD)
        for band in GROUPS:
            members = [n for n in graph_nodes if n.band == band]
            if members:
                groups.append(self.group(band, members))
        return groups

    def place_band(self, members: list[Node], col: dict[int, int], xs: list[int], preds: dict, y0: int) -> int:
        """Column by column: each node as level as the nodes feeding it (same band), never above the one before
        it in its column. Returns the band's bottom edge."""
        bottom = y0
        placed: dict[int, Node] = {}
        for c in sorted({col[n.id] for n in members}):
            cursor = y0
            in_col = [n for n in members if col[n.id] == c]
            wanted = {}
            for n in in_col:
                ys = [placed[p].pos[1] for p in preds[n.id] if p in placed]
                wanted[n.id] = sum(ys) / len(ys) if ys else y0 + TITLE_H
            for n in sorted(in_col, key=lambda n: (wanted[n.id], n.id)):
                top = max(cursor, int(wanted[n.id]) - TITLE_H)
                n.pos = (xs[c], top + TITLE_H)
                cursor = top + TITLE_H + n.height + GAP_Y
                bottom = max(bottom, top + TITLE_H + n.height)
                placed[n.id] = n
        return bottom

    @staticmethod
    def group(band: str, members: list[Node]) -> dict:
        x0 = min(n.pos[0] for n in members) - GROUP_PAD
        y0 = min(n.pos[1] - TITLE_H for n in members) - GROUP_PAD - GROUP_HEAD
        x1 = max(n.pos[0] + n.width for n in members) + GROUP_PAD
        y1 = max(n.pos[1] + n.height for n in members) + GROUP_PAD
        title, color = GROUPS[band]
        return {"title": title, "bounding": [x0, y0, x1 - x0, y1 - y0], "color": color, "font_size": 24, "flags": {}}

    def ui(self) -> dict:
        groups = self.layout()
        for i, grp in enumerate(groups):
            grp["id"] = i + 1
        nodes = []
        for n in self.nodes:
            props = {"Node name for S&R": n.type}
            if n.models:
                props["models"] = n.models
            node = {"id": n.id, "type": n.type, "pos": list(n.pos), "size": [n.width, n.height], "flags": {},
                    "order": n.id - 1, "mode": 0, "inputs": n.inputs, "outputs": n.outputs, "properties": props,
                    "widgets_values": n.widgets}
            if n.title:
                node["title"] = n.title
            nodes.append(node)
        x0 = min(n.pos[0] for n in self.nodes)
        y0 = min(n.pos[1] - TITLE_H for n in self.nodes)
        return {"id": "00000000-0000-4000-8000-00000000d4e0", "revision": 0, "last_node_id": len(self.nodes),
                "last_link_id": len(self.links), "nodes": nodes, "links": self.links, "groups": groups,
                "config": {}, "extra": {"ds": {"scale": 0.5, "offset": [60 - x0, 60 - y0]}}, "version": 0.4}


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


def files_section(stack: list, pre_stack: list, auto: bool, face: bool) -> str:
    rows = [("flux1-dev.safetensors", "diffusion_models"), ("clip_l.safetensors, t5xxl_fp16.safetensors",
                                                             "text_encoders"), ("ae.safetensors", "vae"),
            ("dreamo_comfyui.safetensors, embedding.safetensors", "loras")]
    rows += [(name, "loras") for name, _, _ in [*pre_stack, *stack]]
    if auto:
        rows.append(("birefnet.safetensors", "background_removal"))
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
                 sampler: list, title: str) -> int:
    """KSampler (``sampler`` = its widget values) -> VAEDecode -> SaveImage in the sample group; returns the
    decode node. ``model`` is (node, output slot); ``positive`` is Apply's output 1."""
    ks = g.add("KSampler", sampler, "sample", title)
    g.link(model[0], model[1], ks, "model")
    g.link(positive, 1, ks, "positive")
    g.link(negative, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    dec = g.add("VAEDecode", [], "sample", "Decode")
    g.link(ks, 0, dec, "samples")
    g.link(vae, 0, dec, "vae")
    save = g.add("SaveImage", ["DreamO"], "sample", "Save result")
    g.link(dec, 0, save, "images")
    return dec


def build(title: str, what: str, prompt: str, refs: list[Ref], stack: list, steps: int, guidance: float,
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

    unet = g.add("UNETLoader", ["flux1-dev.safetensors", "default"], "models", "FLUX.1-dev model")
    clip = g.add("DualCLIPLoader", ["clip_l.safetensors", "t5xxl_fp16.safetensors", "flux", "default"], "prompt",
                 "FLUX text encoders (CLIP-L + T5-XXL)")
    vae = g.add("VAELoader", ["ae.safetensors"], "models", "FLUX VAE")
    model = unet
    for name, strength, ttl in pre_stack:  # LoRAs before DreamO's (the order does not change the sum)
        nxt = g.add("LoraLoaderModelOnly", [name, strength], "models", ttl)
        g.link(model, 0, nxt, "model")
        model = nxt
    dreamo = g.add("DreamO_LoadLoRA", ["dreamo_comfyui.safetensors", 1.0, "embedding.safetensors"], "models",
                   "DreamO LoRA + task/index embeddings")
    g.link(model, 0, dreamo, "model")
    model = dreamo
    for name, strength, ttl in stack:
        nxt = g.add("LoraLoaderModelOnly", [name, strength], "models", ttl)
        g.link(model, 0, nxt, "model")
        model = nxt
    bg_model = face_model = None
    if auto:
        bg_model = g.add("LoadBackgroundRemovalModel", ["birefnet.safetensors"], "refs", "Background remover (BiRefNet)")
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


TOY_PROMPT = "a [ref#1] at top left and a [ref#2] at bottom right on a gray background"
TOY_STEPS, TOY_SIZE, TOY_REF_RES, TOY_CFG = 10, 128, 96, 3.0  # training/toy_generate.py, toy_base.py: the
# settings all three paths share


def build_toy() -> dict:
    """The toy DreamO of ``python -m training.demo`` (two references), pinned to the sampler settings under which
    ComfyUI, the ``dreamo`` generator and the trainer's sampler give the same image: euler + simple, 10 steps
    (1000 / 10 makes ``simple`` pick exactly the official linspace sigmas), ModelSamplingFlux 1.15 / 0.5 at the
    image size (the generator's time shift), true CFG 3 with an empty negative prompt (the negative pass gets no
    references), DreamO Text Encode for the [ref#i] rows."""
    g = Graph()
    g.note("\n".join([
        "## DreamO toy: two subjects", "",
        "The toy DreamO trained on a CPU by `python -m training.demo` (training/README.md): 32 x 32 px scenes of "
        "shapes, stored 4x (128 px). The same seed gives the same image as the `dreamo` generator and the trainer's "
        "sampler (tests/nodes/test_toy_workflow.py) with these settings: euler, simple, 10 steps, cfg 3 (empty "
        "negative prompt: the negative pass runs without the references), "
        "ModelSamplingFlux 1.15 / 0.5 at 128 x 128, reference resolution 96, guidance 3.5.", "",
        "**Files**: `models/toy/dreamo_toy.safetensors` (official DreamO format) → `models/loras/`. The toy base "
        "(`models/toy/base`, head width 32), its hashed-word text encoder and its codec have no ComfyUI loader: "
        "the three loaders here are stand-ins that the test replaces with the toy's (tests/nodes/toy_comfy.py); "
        "a stock ComfyUI cannot load the toy by itself.", "",
        "**Prompt**: `[ref#1]` / `[ref#2]` name the references; the toy knows 3 x 3 places (top left … bottom "
        "right) and six backgrounds. It has no style task (`generate a same style image.` means nothing to it)."]),
        760, 330)
    unet = g.add("UNETLoader", ["dreamo_toy_base.safetensors", "default"], "models", "Toy base (stand-in loader)")
    clip = g.add("DualCLIPLoader", ["dreamo_toy_text.safetensors", "dreamo_toy_text.safetensors", "flux", "default"],
                 "prompt", "Toy text encoder (stand-in loader)")
    vae = g.add("VAELoader", ["dreamo_toy_codec.safetensors"], "models", "Toy codec (stand-in loader)")
    dreamo = g.add("DreamO_LoadLoRA", ["dreamo_toy.safetensors", 1.0, "None"], "models", "Toy DreamO LoRA + embeddings")
    g.link(unet, 0, dreamo, "model")
    shift = g.add("ModelSamplingFlux", [1.15, 0.5, TOY_SIZE, TOY_SIZE], "models", "FLUX time shift at 128 x 128")
    g.link(dreamo, 0, shift, "model")
    prev = None
    for k in (1, 2):
        img = g.add("LoadImage", [f"dreamo_toy_ref{k}.png", "image"], "refs", f"Subject {k} image")
        enc = g.add("DreamO_EncodeReference", ["ip", k, TOY_REF_RES, False], "refs", f"Subject {k} reference")
        g.link(img, 0, enc, "image")
        g.link(vae, 0, enc, "vae")
        if prev is not None:
            g.link(prev, 0, enc, "references")
        prev = enc
    pos = g.add("DreamO_TextEncode", [TOY_PROMPT, 3.5], "prompt", "Prompt with [ref#1], [ref#2]")
    g.link(clip, 0, pos, "clip")
    g.link(dreamo, 0, pos, "model")
    g.link(prev, 0, pos, "references")
    neg = g.add("CLIPTextEncode", [""], "prompt", "Negative prompt (empty; runs without references)")
    g.link(clip, 0, neg, "clip")
    apply = g.add("DreamO_ApplyConditioning", [], "sample", "Apply DreamO")
    g.link(shift, 0, apply, "model")
    g.link(pos, 0, apply, "positive")
    g.link(prev, 0, apply, "references")
    latent = g.add("EmptySD3LatentImage", [TOY_SIZE, TOY_SIZE, 1], "sample", "Output size (toy: 128)")
    add_sampling(g, (apply, 0), apply, neg, latent, vae, [0, "fixed", TOY_STEPS, TOY_CFG, "euler", "simple", 1.0],
                 "Sampler (pinned)")
    ui = g.ui()
    ui["extra"]["dreamo"] = {"title": "DreamO toy: two subjects", "description": "The CPU-trained toy DreamO of "
                             "training/: two shape subjects placed by the prompt.", "needs": None}
    return ui


SUBJECT = Ref("dreamo_subject.png", "ip", 1, "Subject")
FACE = Ref("dreamo_face.png", "id", 1, "Face")
GARMENT_TIP = ("Garment: an image with a transparent background; its alpha is the mask (`invert_mask` on, since "
               "LoadImage's MASK is 1 - alpha).")
AUTO = "ComfyUI 0.33"
WORKFLOWS = {
    "dreamo_ip_single_subject": build(
        "DreamO: one subject", "Puts the subject of one reference image (ip task) into a new scene; v1 LoRA stack, "
        "12 steps.", "a plush toy sitting on a wooden bench in a sunny park", [SUBJECT], V1_STACK, 12, 3.5,
        tips="Subject: best on a plain or removed background (connect a mask to the reference, 1 = keep)."),
    "dreamo_id_identity": build(
        "DreamO: identity", "Keeps the identity of a face (id task) in a new picture; v1 LoRA stack, 12 steps.",
        "portrait of a woman as an astronaut on the moon, cinematic lighting", [FACE], V1_STACK, 12, 3.5,
        tips="Face: use a tight, upright face crop (the id task centre-crops 512 x 512); "
             "`dreamo_id_identity_auto_face_crop` does the crop with core nodes."),
    "dreamo_style": build(
        "DreamO: style", "Draws a new subject in the style of a reference image (style task).",
        "generate a same style image. a lighthouse on a cliff at sunset",
        [Ref("dreamo_style.png", "style", 1, "Style")], V1_STACK, 12, 3.5),
    "dreamo_try_on": build(
        "DreamO: try-on", "Dresses a person in a garment from a reference image (ip task with the garment's mask).",
        "a young man wearing the t-shirt, standing on a beach, full body photo",
        [Ref("dreamo_garment.png", "ip", 1, "Garment", mask=True)], V1_STACK, 12, 3.5, tips=GARMENT_TIP),
    "dreamo_multi_reference": build(
        "DreamO: three subjects", "Combines three subjects (ip, indices 1, 2, 3) in one picture.",
        "a dog, a cat and a teapot together on a red sofa",
        [Ref("dreamo_subject.png", "ip", 1, "First subject"), Ref("dreamo_subject2.png", "ip", 2, "Second subject"),
         Ref("dreamo_subject3.png", "ip", 3, "Third subject")], V1_STACK, 12, 3.5),
    "dreamo_identity_try_on": build(
        "DreamO: identity + try-on", "A person with the reference face (id, 1) wearing the reference garment (ip, 2).",
        "a woman wearing the dress, walking in a city street, full body photo",
        [FACE, Ref("dreamo_garment.png", "ip", 2, "Garment", mask=True)], V1_STACK, 12, 3.5, tips=GARMENT_TIP),
    "dreamo_v1_1_turbo_12_steps": build(
        "DreamO v1.1: one subject, turbo", "DreamO v1.1 LoRA stack (turbo, SFT, DPO), FluxGuidance 4.5, 12 steps "
        "euler/simple, cfg 1.", "a plush toy sitting on a wooden bench in a sunny park", [SUBJECT], V11_STACK, 12, 4.5,
        pre_stack=(TURBO,)),
    "dreamo_two_subjects_left_right": build(
        "DreamO: two subjects, left and right", "Two subjects placed by boxes: the first in the left half, the "
        "second in the right half (DreamO Reference Options).", "a dog and a cat sitting side by side on a sofa",
        [Ref("dreamo_subject.png", "ip", 1, "Left subject", options=[1.0, 0.0, 1.0, True, 0.0, 0.1, 0.5, 0.8],
             options_title="Place left"),
         Ref("dreamo_subject2.png", "ip", 2, "Right subject", options=[1.0, 0.0, 1.0, True, 0.5, 0.1, 0.5, 0.8],
             options_title="Place right")], V1_STACK, 12, 3.5),
    "dreamo_weak_style_strong_identity": build(
        "DreamO: weak style, strong identity", "A face (identity at strength 1.5) in a style that only acts on the "
        "first 60% of the steps at strength 0.5.", "generate a same style image. portrait of a woman reading in a cafe",
        [Ref("dreamo_face.png", "id", 1, "Face", options=[1.5, 0.0, 1.0, False, 0.0, 0.0, 1.0, 1.0],
             options_title="Stronger identity"),
         Ref("dreamo_style.png", "style", 2, "Style", options=[0.5, 0.0, 0.6, False, 0.0, 0.0, 1.0, 1.0],
             options_title="Weaker, early style")], V1_STACK, 12, 3.5),
    "dreamo_routing_preview": build(
        "DreamO: routing preview", "Two subjects, plus an overlay of where each reference landed in the image.",
        "a dog and a cat together on a red sofa",
        [Ref("dreamo_subject.png", "ip", 1, "First subject"), Ref("dreamo_subject2.png", "ip", 2, "Second subject")],
        V1_STACK, 12, 3.5, preview=True),
    "dreamo_id_identity_auto_face_crop_comfyui_0_33": build(
        "DreamO: identity, automatic face crop", "Identity from any photo: core nodes find the face (MediaPipe), "
        "crop it to 512 x 512 and remove its background (BiRefNet) before the id reference.",
        "portrait of a woman as an astronaut on the moon, cinematic lighting",
        [Ref("dreamo_face.png", "id", 1, "Face", auto="face")], V1_STACK, 12, 3.5, needs=AUTO,
        tips="No face found: the whole photo goes on (the id task then centre-crops it). Raise the crop's "
             "padding to keep more hair."),
    "dreamo_try_on_auto_mask_comfyui_0_33": build(
        "DreamO: try-on, automatic garment mask", "Try-on from any garment photo: core Remove Background (BiRefNet) "
        "makes the garment's mask.", "a young man wearing the t-shirt, standing on a beach, full body photo",
        [Ref("dreamo_garment.png", "ip", 1, "Garment", auto="bg")], V1_STACK, 12, 3.5, needs=AUTO),
    "dreamo_identity_try_on_auto_comfyui_0_33": build(
        "DreamO: identity + try-on, automatic preprocessing", "Face crop and garment mask made by core nodes, then "
        "a person with the face (id, 1) wearing the garment (ip, 2).",
        "a woman wearing the dress, walking in a city street, full body photo",
        [Ref("dreamo_face.png", "id", 1, "Face", auto="face"), Ref("dreamo_garment.png", "ip", 2, "Garment", auto="bg")],
        V1_STACK, 12, 3.5, needs=AUTO),
    "dreamo_subject_tuned_lora": build(
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
    "dreamo_background_fusion": build(
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
    "dreamo_toy": build_toy(),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, ui in WORKFLOWS.items():
        (OUT / f"{name}.json").write_text(json.dumps(ui, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
