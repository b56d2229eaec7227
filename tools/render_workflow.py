"""Draws a ComfyUI UI-format workflow (nodes, sockets, links, widget values) into a PNG.

Usage: python tools/render_workflow.py workflows/*.json   (writes workflows/<name>.png next to each file)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TYPE_COLORS = {"MODEL": "#b39ddb", "CLIP": "#ffd54f", "VAE": "#ef5350", "CONDITIONING": "#ffa726",
               "LATENT": "#f48fb1", "IMAGE": "#64b5f6", "MASK": "#81c784", "DREAMO_REFS": "#4dd0e1"}
NODE_W, ROW, HEAD, MARGIN, SCALE = 300, 22, 26, 40, 1.0


def node_box(node: dict, ox: float, oy: float) -> tuple[float, float, float, float]:
    rows = max(len(node["inputs"]), len(node["outputs"])) + len(node.get("widgets_values", []))
    x, y = (node["pos"][0] - ox) * SCALE + MARGIN, (node["pos"][1] - oy) * SCALE + MARGIN
    return x, y, x + NODE_W * SCALE, y + (HEAD + ROW * rows + 8) * SCALE


def render(ui: dict) -> Image.Image:
    nodes = ui["nodes"]
    ox = min(n["pos"][0] for n in nodes)
    oy = min(n["pos"][1] for n in nodes)
    boxes = {n["id"]: node_box(n, ox, oy) for n in nodes}
    w = int(max(b[2] for b in boxes.values()) + MARGIN)
    h = int(max(b[3] for b in boxes.values()) + MARGIN)
    img = Image.new("RGB", (w, h), "#202020")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    s = SCALE

    def out_xy(nid: int, slot: int) -> tuple[float, float]:
        b = boxes[nid]
        return b[2], b[1] + (HEAD + ROW * slot + ROW / 2) * s

    def in_xy(nid: int, slot: int) -> tuple[float, float]:
        b = boxes[nid]
        return b[0], b[1] + (HEAD + ROW * slot + ROW / 2) * s

    for n in nodes:
        b = boxes[n["id"]]
        d.rounded_rectangle(b, radius=6, fill="#353535", outline="#555555")
        d.rounded_rectangle((b[0], b[1], b[2], b[1] + HEAD * s), radius=6, fill="#4a4a4a")
        d.text((b[0] + 6, b[1] + 5), n.get("title") or n["type"], fill="white", font=font)
        for i, inp in enumerate(n["inputs"]):
            x, y = in_xy(n["id"], i)
            d.ellipse((x - 4, y - 4, x + 4, y + 4), fill=TYPE_COLORS.get(inp["type"], "#aaaaaa"))
            d.text((x + 8, y - 6), inp["name"], fill="#dddddd", font=font)
        for i, out in enumerate(n["outputs"]):
            x, y = out_xy(n["id"], i)
            d.ellipse((x - 4, y - 4, x + 4, y + 4), fill=TYPE_COLORS.get(out["type"], "#aaaaaa"))
            d.text((x - 8 - d.textlength(out["name"], font=font), y - 6), out["name"], fill="#dddddd", font=font)
        top = b[1] + (HEAD + ROW * max(len(n["inputs"]), len(n["outputs"]))) * s
        for i, value in enumerate(n.get("widgets_values", [])):
            text = str(value)
            text = text if len(text) <= 44 else text[:41] + "..."
            d.text((b[0] + 8, top + i * ROW * s + 4), text, fill="#9ecbff", font=font)
    for _, src, slot, dst, dslot, typ in ui["links"]:
        (x0, y0), (x1, y1) = out_xy(src, slot), in_xy(dst, dslot)
        mid = (x0 + x1) / 2
        d.line([(x0, y0), (mid, y0), (mid, y1), (x1, y1)], fill=TYPE_COLORS.get(typ, "#aaaaaa"), width=2)
    return img


def main(paths: list[str]) -> None:
    for p in map(Path, paths):
        render(json.loads(p.read_text())).save(p.with_suffix(".png"))
        print(f"wrote {p.with_suffix('.png')}")


if __name__ == "__main__":
    main(sys.argv[1:])
