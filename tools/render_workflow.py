"""Draws a ComfyUI UI-format workflow into its template-browser thumbnail ``<name>.jpg``: a header saying what
the workflow makes, then the graph as it is laid out (groups, nodes at their saved pos/size, titles, sockets,
widget values, links).

Usage: python tools/render_workflow.py workflows/*.json   (writes workflows/<name>.jpg next to each file)
The ComfyUI frontend's template browser asks for ``/api/workflow_templates/<pack>/<name>.jpg``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

if not __package__:  # run as a file: import this checkout's packages (not an installed copy of another checkout)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.workflows.litegraph import NOTE_TYPES, SLOT_H, TITLE_H  # noqa: E402

TYPE_COLORS = {"MODEL": "#b39ddb", "CLIP": "#ffd54f", "VAE": "#ef5350", "CONDITIONING": "#ffa726",
               "LATENT": "#f48fb1", "IMAGE": "#64b5f6", "MASK": "#81c784", "DREAMO_REFS": "#4dd0e1",
               "DREAMO_ROUTING": "#e6ee9c", "BACKGROUND_REMOVAL": "#a1887f", "FACE_DETECTION_MODEL": "#a1887f",
               "BOUNDING_BOX": "#ce93d8"}
SCALE, MARGIN, HEADER = 0.4, 24, 96
WIDTH = 1600  # thumbnails are scaled to this width (height follows the graph)
QUALITY = 88


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: the same pixels on every machine


def render(ui: dict, title: str, description: str) -> Image.Image:
    nodes = ui["nodes"]
    s = SCALE
    x0 = min([n["pos"][0] for n in nodes] + [g["bounding"][0] for g in ui["groups"]])
    y0 = min([n["pos"][1] - TITLE_H for n in nodes] + [g["bounding"][1] for g in ui["groups"]])
    x1 = max([n["pos"][0] + n["size"][0] for n in nodes] + [g["bounding"][0] + g["bounding"][2] for g in ui["groups"]])
    y1 = max([n["pos"][1] + n["size"][1] for n in nodes] + [g["bounding"][1] + g["bounding"][3] for g in ui["groups"]])

    def xy(x: float, y: float) -> tuple[float, float]:
        return (x - x0) * s + MARGIN, (y - y0) * s + MARGIN + HEADER

    w, h = int((x1 - x0) * s + 2 * MARGIN), int((y1 - y0) * s + 2 * MARGIN + HEADER)
    img = Image.new("RGB", (w, h), "#1e1e1e")
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, w, HEADER), fill="#2b2b2b")
    d.text((MARGIN, 14), title, fill="white", font=font(34))
    d.text((MARGIN, 58), description, fill="#cfcfcf", font=font(20))
    small, tiny = font(12), font(10)
    for grp in ui["groups"]:
        gx, gy, gw, gh = grp["bounding"]
        a, b = xy(gx, gy), xy(gx + gw, gy + gh)
        d.rectangle((*a, *b), fill=blend(grp.get("color", "#3f789e")), outline=grp.get("color", "#3f789e"), width=2)
        d.text((a[0] + 6, a[1] + 4), grp["title"], fill="#e0e0e0", font=font(14))
    by_id = {n["id"]: n for n in nodes}

    def slot_xy(node: dict, slot: int, output: bool) -> tuple[float, float]:
        x = node["pos"][0] + (node["size"][0] if output else 0)
        return xy(x, node["pos"][1] + SLOT_H * slot + SLOT_H / 2)

    for _, src, slot, dst, dslot, typ in ui["links"]:
        (ax, ay), (bx, by) = slot_xy(by_id[src], slot, True), slot_xy(by_id[dst], dslot, False)
        mid = (ax + bx) / 2
        d.line([(ax, ay), (mid, ay), (mid, by), (bx, by)], fill=TYPE_COLORS.get(typ, "#aaaaaa"), width=2)
    for n in nodes:
        a = xy(n["pos"][0], n["pos"][1] - TITLE_H)
        b = xy(n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        note = n["type"] in NOTE_TYPES
        d.rounded_rectangle((*a, *b), radius=5, fill="#3a3a2a" if note else "#353535", outline="#666666")
        d.rounded_rectangle((a[0], a[1], b[0], a[1] + TITLE_H * s), radius=5, fill="#4a4a4a")
        d.text((a[0] + 4, a[1] + 1), n.get("title") or n["type"], fill="white", font=small)
        if note:
            lines = str(n["widgets_values"][0]).replace("**", "").replace("`", "").replace("→", "->").splitlines()
            for i, line in enumerate(lines[: int((b[1] - a[1] - TITLE_H * s) // 12)]):
                d.text((a[0] + 6, a[1] + TITLE_H * s + 4 + i * 12), line[:120], fill="#dddddd", font=tiny)
            continue
        for i, inp in enumerate(n["inputs"]):
            x, y = slot_xy(n, i, False)
            d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=TYPE_COLORS.get(inp["type"], "#aaaaaa"))
        for i, out in enumerate(n["outputs"]):
            x, y = slot_xy(n, i, True)
            d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=TYPE_COLORS.get(out["type"], "#aaaaaa"))
        rows = max(len(n["inputs"]), len(n["outputs"]))
        values = [str(v) for v in n.get("widgets_values", [])]
        top = xy(0, n["pos"][1] + SLOT_H * rows)[1]
        for i, text in enumerate(values[:8]):
            text = text.replace("\n", " ")
            text = text if len(text) <= 40 else text[:37] + "..."
            d.text((a[0] + 5, top + i * 11), text, fill="#9ecbff", font=tiny)
    if w > WIDTH:
        img = img.resize((WIDTH, round(h * WIDTH / w)), Image.Resampling.LANCZOS)
    return img


def blend(color: str, alpha: float = 0.25) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    bg = 0x1e
    return "#" + "".join(f"{round(bg + (c - bg) * alpha):02x}" for c in (r, g, b))


def main(paths: list[str]) -> None:
    for p in map(Path, paths):
        ui = json.loads(p.read_text())
        meta = ui.get("extra", {}).get("dreamo", {})
        out = p.parent / f"{p.stem}.jpg"
        render(ui, meta.get("title", p.stem), meta.get("description", "")).save(out, quality=QUALITY, optimize=True)
        print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
