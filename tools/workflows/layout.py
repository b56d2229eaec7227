"""``Graph``: a workflow's nodes and links, laid out left to right and written as UI JSON.

A node's column is one past the deepest node that feeds it (so every link runs rightwards), nodes are stacked in
bands (models, prompt, references, sampling), one group per band, a Markdown note on top. Node sizes are estimated
generously from their sockets and widgets (the title bar, TITLE_H, sits above ``pos`` as in LiteGraph), so no two
node rectangles overlap (tests/workflows/test_layout.py; tests/browser/ checks the sizes the real frontend gives
them too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalogue import MODEL_FILES
from .litegraph import SLOT_H, TITLE_H
from .node_types import SOCKETS

WIDGET_H, TEXT_H, IMAGE_H = 28, 150, 240  # per widget, multiline text, image preview
GAP_X, GAP_Y = 70, 40  # between columns, between nodes of a column
GROUP_PAD, GROUP_HEAD = 20, 46  # group padding around its nodes and its title band
BAND_GAP = 40  # between two groups
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
