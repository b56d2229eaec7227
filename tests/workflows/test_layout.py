"""The shipped workflows as a user sees them, without ComfyUI: laid out left to right with no overlapping nodes,
grouped, explained by a note, with download metadata for every model file, a JPEG thumbnail, and equal to what
tools/build_workflows.py writes (the builder: tools/workflows/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from tools.workflows import table
from tools.workflows.catalogue import NO_DOWNLOAD
from tools.workflows.litegraph import NOTE_TYPES, TITLE_H
from tools.workflows.node_types import PREPROCESSING_TYPES

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
TOY = "dreamo_toy"  # the CPU-trained toy of training/: its files are in the repo (models/toy), no downloads


def rect(node: dict) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1 of a node including its title bar."""
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE_H, x + w, y + h


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(a, outer) -> bool:
    return outer[0] <= a[0] and outer[1] <= a[1] and a[2] <= outer[2] and a[3] <= outer[3]


def group_rect(group: dict) -> tuple[float, float, float, float]:
    x, y, w, h = group["bounding"]
    return x, y, x + w, y + h


def layout_problems(ui: dict) -> list[str]:
    """Every overlapping pair of node rectangles (title bars included), every link whose target does not start
    right of its source's right edge, overlapping groups, and nodes not inside exactly one group (notes: none)."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    rects = {i: rect(n) for i, n in nodes.items()}
    ids = sorted(rects)
    problems = [f"nodes {a} and {b} overlap" for k, a in enumerate(ids) for b in ids[k + 1:]
                if overlap(rects[a], rects[b])]
    problems += [f"link {lk[0]} ({lk[1]} -> {lk[3]}) runs backwards" for lk in ui["links"]
                 if rects[lk[3]][0] <= rects[lk[1]][2]]
    groups = [group_rect(g) for g in ui.get("groups", [])]
    problems += [f"groups {a} and {b} overlap" for a in range(len(groups)) for b in range(a + 1, len(groups))
                 if overlap(groups[a], groups[b])]
    for i, n in nodes.items():
        containing = sum(inside(rects[i], g) for g in groups)
        touching = sum(overlap(rects[i], g) for g in groups)
        want = 0 if n["type"] in NOTE_TYPES else 1
        if containing != want or touching != want:
            problems.append(f"node {i} ({n['type']}) is in {containing} groups and touches {touching}")
    return problems


def test_the_checker_finds_overlaps_and_backward_links():
    a = {"id": 1, "type": "A", "pos": [0, 30], "size": [100, 50]}
    b = {"id": 2, "type": "B", "pos": [90, 60], "size": [100, 50]}  # overlaps a, and starts left of a's right
    ui = {"nodes": [a, b], "links": [[1, 1, 0, 2, 0, "X"]], "groups": []}
    found = layout_problems(ui)
    assert "nodes 1 and 2 overlap" in found and "link 1 (1 -> 2) runs backwards" in found
    b["pos"] = [200, 30]  # title bar of b (y 0..30) beside a: fine, and the link runs rightwards
    ui["groups"] = [{"bounding": [-10, -10, 400, 200]}]
    assert layout_problems(ui) == []
    b["pos"] = [0, 110]  # b's title bar (80..110) under a's body (ends at 80): fine vertically
    assert layout_problems(ui) == ["link 1 (1 -> 2) runs backwards"]
    b["pos"] = [0, 100]  # b's title bar starts at 70, inside a's body
    assert "nodes 1 and 2 overlap" in layout_problems(ui)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_left_to_right_without_overlaps(path):
    assert layout_problems(json.loads(path.read_text())) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_note_groups_and_model_metadata(path):
    ui = json.loads(path.read_text())
    notes = [n for n in ui["nodes"] if n["type"] == "MarkdownNote"]
    assert len(notes) == 1 and len(ui["groups"]) >= 4
    text = notes[0]["widgets_values"][0]
    assert "models/loras/" in text
    if path.stem == TOY:  # repo files, named with where they are; the stand-in loaders are said to be stand-ins
        assert "models/toy/runs/placed_route_s0.safetensors" in text and "stand-in" in text  # toy.constants.MAIN_EXPORT
        assert not any(n["properties"].get("models") for n in ui["nodes"])
        return
    assert "generate a same style image." in text  # the style task's fixed prompt (the toy has no style task)
    for n in ui["nodes"]:
        names = [v for v in n.get("widgets_values", []) if isinstance(v, str) and v.endswith(".safetensors")]
        listed = {m["name"]: m for m in n["properties"].get("models", [])}
        expected = [v for v in names if v not in NO_DOWNLOAD]  # MediaPipe file, the user's subject LoRA
        assert sorted(listed) == sorted(expected), (n["type"], names, listed)
        for m in listed.values():
            assert m["url"].startswith("https://huggingface.co/") and m["url"].endswith(".safetensors")
            assert m["directory"] in ("diffusion_models", "text_encoders", "vae", "loras", "background_removal")
            assert m["name"] in text  # the note names every file it needs
        if n["type"] == "DreamO_LoadLoRA":
            assert n["properties"]["models"][0]["url"].startswith("https://huggingface.co/ByteDance/DreamO/")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_titles_say_what_a_node_is_for(path):
    ui = json.loads(path.read_text())
    loras = [n["title"] for n in ui["nodes"] if n["type"] == "LoraLoaderModelOnly"]
    assert len(set(loras)) == len(loras) >= (0 if path.stem == TOY else 3)  # cfg-distill / quality +/- / turbo
    assert not any(re.search(r"\((ip|id|style), \d\)", n.get("title", "")) for n in ui["nodes"])
    assert all(n.get("title") for n in ui["nodes"])
    if any(n["widgets_values"][0] == "dreamo_quality_lora_neg_comfyui.safetensors" for n in ui["nodes"]
           if n["type"] == "LoraLoaderModelOnly"):
        assert any("negative" in t for t in loras) and any("cfg-distill" in t for t in loras)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_jpeg_thumbnail(path):
    thumb = path.parent / f"{path.stem}.jpg"
    with Image.open(thumb) as img:
        assert img.format == "JPEG" and img.width >= 800 and img.height >= 300


def test_files_are_what_the_builder_writes(tmp_path):
    on_disk = {p.stem: json.loads(p.read_text()) for p in WORKFLOWS}
    assert on_disk == table.WORKFLOWS, "run python tools/build_workflows.py"
    table.write_workflows(tmp_path)  # and byte for byte, as the command writes them
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {p.name: p.read_bytes() for p in WORKFLOWS}
    assert sorted(p.stem for p in (REPO / "workflows").glob("*.jpg")) == sorted(on_disk)


def test_preprocessing_workflows_say_the_comfyui_they_need():
    for p in WORKFLOWS:
        ui = json.loads(p.read_text())
        auto = any(n["type"] in PREPROCESSING_TYPES for n in ui["nodes"])
        assert auto == p.stem.endswith("_comfyui_0_33"), p.stem
        if auto:
            assert "Needs ComfyUI 0.33" in ui["nodes"][0]["widgets_values"][0]
