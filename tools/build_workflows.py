"""Writes the example workflows in workflows/ (ComfyUI frontend UI format, version 0.4).

Run: python tools/build_workflows.py   (then python tools/render_workflow.py workflows/*.json)
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "workflows"
SOCKETS = {  # type: (inputs [(name, type)], outputs [(name, type)])
    "UNETLoader": ([], [("MODEL", "MODEL")]),
    "DualCLIPLoader": ([], [("CLIP", "CLIP")]),
    "VAELoader": ([], [("VAE", "VAE")]),
    "LoraLoaderModelOnly": ([("model", "MODEL")], [("MODEL", "MODEL")]),
    "DreamO_LoadLoRA": ([("model", "MODEL")], [("MODEL", "MODEL")]),
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "DreamO_EncodeReference": ([("image", "IMAGE"), ("vae", "VAE"), ("mask", "MASK"), ("references", "DREAMO_REFS")],
                               [("references", "DREAMO_REFS")]),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")]),
    "FluxGuidance": ([("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")]),
    "DreamO_ApplyConditioning": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("references", "DREAMO_REFS")],
                                 [("model", "MODEL"), ("positive", "CONDITIONING")]),
    "EmptySD3LatentImage": ([], [("LATENT", "LATENT")]),
    "KSampler": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT")], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "SaveImage": ([("images", "IMAGE")], []),
    "DreamO_ReferenceOptions": ([("references", "DREAMO_REFS")], [("references", "DREAMO_REFS")]),
    "DreamO_RoutingRecorder": ([("model", "MODEL")], [("model", "MODEL"), ("routing", "DREAMO_ROUTING")]),
    "DreamO_RoutingPreview": ([("routing", "DREAMO_ROUTING"), ("image", "IMAGE")], [("masks", "MASK"), ("overlay", "IMAGE")]),
}
V1_STACK = [("dreamo_cfg_distill_comfyui.safetensors", 1.0), ("flux-turbo.safetensors", 1.0),
            ("dreamo_quality_lora_pos_comfyui.safetensors", 0.15), ("dreamo_quality_lora_neg_comfyui.safetensors", -0.8)]
V11_STACK = [("dreamo_cfg_distill_comfyui.safetensors", 1.0), ("dreamo_sft_lora.safetensors", 1.0),
             ("dreamo_dpo_lora.safetensors", 1.25)]


class Graph:
    def __init__(self) -> None:
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def add(self, type_: str, widgets: list, pos: tuple[int, int], title: str | None = None) -> int:
        ins, outs = SOCKETS[type_]
        nid = len(self.nodes) + 1
        node = {"id": nid, "type": type_, "pos": list(pos), "size": [300, 60 + 24 * (len(ins) + len(widgets))],
                "flags": {}, "order": nid - 1, "mode": 0,
                "inputs": [{"name": n, "type": t, "link": None} for n, t in ins],
                "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outs)],
                "properties": {"Node name for S&R": type_}, "widgets_values": widgets}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return nid

    def link(self, src: int, slot: int, dst: int, name: str) -> None:
        lid = len(self.links) + 1
        s, d = self.nodes[src - 1], self.nodes[dst - 1]
        inp = next(i for i, x in enumerate(d["inputs"]) if x["name"] == name)
        typ = s["outputs"][slot]["type"]
        self.links.append([lid, src, slot, dst, inp, typ])
        s["outputs"][slot]["links"].append(lid)
        d["inputs"][inp]["link"] = lid

    def ui(self) -> dict:
        return {"id": "00000000-0000-4000-8000-00000000d4e0", "revision": 0, "last_node_id": len(self.nodes),
                "last_link_id": len(self.links), "nodes": self.nodes, "links": self.links, "groups": [],
                "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}


def build(prompt: str, refs: list[dict], stack: list, steps: int, guidance: float, pre_stack: tuple = (),
          preview: bool = False) -> dict:
    """refs: [{"image": file, "task": ..., "index": k, "mask": bool, "options": [strength, start, end, use_box,
    x, y, w, h]}] chained in order; preview adds the routing recorder and preview."""
    g = Graph()
    unet = g.add("UNETLoader", ["flux1-dev.safetensors", "default"], (0, 0))
    clip = g.add("DualCLIPLoader", ["clip_l.safetensors", "t5xxl_fp16.safetensors", "flux", "default"], (0, 160))
    vae = g.add("VAELoader", ["ae.safetensors"], (0, 330))
    model = unet
    for i, (name, strength) in enumerate(pre_stack):  # LoRAs before DreamO's (the order does not change the sum)
        nxt = g.add("LoraLoaderModelOnly", [name, strength], (360, -130 * (len(pre_stack) - i)))
        g.link(model, 0, nxt, "model")
        model = nxt
    dreamo = g.add("DreamO_LoadLoRA", ["dreamo_comfyui.safetensors", 1.0, "embedding.safetensors"], (360, 0))
    g.link(model, 0, dreamo, "model")
    model = dreamo
    for i, (name, strength) in enumerate(stack):
        nxt = g.add("LoraLoaderModelOnly", [name, strength], (720, i * 130))
        g.link(model, 0, nxt, "model")
        model = nxt
    prev = None
    for j, r in enumerate(refs):
        img = g.add("LoadImage", [r["image"], "image"], (0, 480 + j * 380))
        enc = g.add("DreamO_EncodeReference", [r["task"], r["index"], r.get("resolution", 512), r.get("mask", False)],
                    (360, 480 + j * 380), title=f"Encode Reference ({r['task']}, {r['index']})")
        g.link(img, 0, enc, "image")
        g.link(vae, 0, enc, "vae")
        if r.get("mask"):
            g.link(img, 1, enc, "mask")
        if prev is not None:
            g.link(prev, 0, enc, "references")
        prev = enc
        if r.get("options"):
            opt = g.add("DreamO_ReferenceOptions", [r["index"], *r["options"]], (720, 900 + j * 380),
                        title=f"Reference Options ({r['index']})")
            g.link(prev, 0, opt, "references")
            prev = opt
    pos_txt = g.add("CLIPTextEncode", [prompt], (360, 200), title="Positive prompt")
    neg_txt = g.add("CLIPTextEncode", [""], (360, 330), title="Negative prompt (unused at cfg 1)")
    g.link(clip, 0, pos_txt, "clip")
    g.link(clip, 0, neg_txt, "clip")
    guid = g.add("FluxGuidance", [guidance], (720, 680))
    g.link(pos_txt, 0, guid, "conditioning")
    apply = g.add("DreamO_ApplyConditioning", [], (1080, 300))
    g.link(model, 0, apply, "model")
    g.link(guid, 0, apply, "positive")
    if prev is not None:
        g.link(prev, 0, apply, "references")
    latent = g.add("EmptySD3LatentImage", [1024, 1024, 1], (1080, 500))
    ks = g.add("KSampler", [42, "fixed", steps, 1.0, "euler", "simple", 1.0], (1440, 200))
    sampler_model = apply
    if preview:
        sampler_model = g.add("DreamO_RoutingRecorder", ["all", 0.0, 1.0], (1080, 640))
        g.link(apply, 0, sampler_model, "model")
    g.link(sampler_model, 0, ks, "model")
    g.link(apply, 1, ks, "positive")
    g.link(neg_txt, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    dec = g.add("VAEDecode", [], (1800, 200))
    g.link(ks, 0, dec, "samples")
    g.link(vae, 0, dec, "vae")
    save = g.add("SaveImage", ["DreamO"], (2100, 200))
    g.link(dec, 0, save, "images")
    if preview:
        pv = g.add("DreamO_RoutingPreview", [0.6], (1800, 420))
        g.link(sampler_model, 1, pv, "routing")
        g.link(dec, 0, pv, "image")
        save_maps = g.add("SaveImage", ["DreamO_routing"], (2100, 420), title="Routing overlay")
        g.link(pv, 1, save_maps, "images")
    return g.ui()


WORKFLOWS = {
    "dreamo_ip_single_subject": build(
        "a plush toy sitting on a wooden bench in a sunny park", [dict(image="dreamo_subject.png", task="ip", index=1)],
        V1_STACK, 12, 3.5),
    "dreamo_id_identity": build(
        "portrait of a woman as an astronaut on the moon, cinematic lighting",
        [dict(image="dreamo_face.png", task="id", index=1)], V1_STACK, 12, 3.5),
    "dreamo_style": build(
        "generate a same style image. a lighthouse on a cliff at sunset",
        [dict(image="dreamo_style.png", task="style", index=1)], V1_STACK, 12, 3.5),
    "dreamo_try_on": build(
        "a young man wearing the t-shirt, standing on a beach, full body photo",
        [dict(image="dreamo_garment.png", task="ip", index=1, mask=True)], V1_STACK, 12, 3.5),
    "dreamo_multi_reference": build(
        "a dog, a cat and a teapot together on a red sofa",
        [dict(image="dreamo_subject.png", task="ip", index=1), dict(image="dreamo_subject2.png", task="ip", index=2),
         dict(image="dreamo_subject3.png", task="ip", index=3)], V1_STACK, 12, 3.5),
    "dreamo_identity_try_on": build(
        "a woman wearing the dress, walking in a city street, full body photo",
        [dict(image="dreamo_face.png", task="id", index=1),
         dict(image="dreamo_garment.png", task="ip", index=2, mask=True)], V1_STACK, 12, 3.5),
    "dreamo_v1_1_turbo_12_steps": build(
        "a plush toy sitting on a wooden bench in a sunny park", [dict(image="dreamo_subject.png", task="ip", index=1)],
        V11_STACK, 12, 4.5, pre_stack=(("flux-turbo.safetensors", 1.0),)),
    "dreamo_two_subjects_left_right": build(
        "a dog and a cat sitting side by side on a sofa",
        [dict(image="dreamo_subject.png", task="ip", index=1, options=[1.0, 0.0, 1.0, True, 0.0, 0.1, 0.5, 0.8]),
         dict(image="dreamo_subject2.png", task="ip", index=2, options=[1.0, 0.0, 1.0, True, 0.5, 0.1, 0.5, 0.8])],
        V1_STACK, 12, 3.5),
    "dreamo_weak_style_strong_identity": build(
        "generate a same style image. portrait of a woman reading in a cafe",
        [dict(image="dreamo_face.png", task="id", index=1, options=[1.5, 0.0, 1.0, False, 0.0, 0.0, 1.0, 1.0]),
         dict(image="dreamo_style.png", task="style", index=2, options=[0.5, 0.0, 0.6, False, 0.0, 0.0, 1.0, 1.0])],
        V1_STACK, 12, 3.5),
    "dreamo_routing_preview": build(
        "a dog and a cat together on a red sofa",
        [dict(image="dreamo_subject.png", task="ip", index=1), dict(image="dreamo_subject2.png", task="ip", index=2)],
        V1_STACK, 12, 3.5, preview=True),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, ui in WORKFLOWS.items():
        (OUT / f"{name}.json").write_text(json.dumps(ui, indent=1) + "\n")


if __name__ == "__main__":
    main()
