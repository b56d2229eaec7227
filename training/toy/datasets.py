"""Toy-world datasets in the trainer's format (``training/data.py``) and the held-out evaluation cases.

Groups (training glyphs only, fresh per row): ``single`` one glyph, ``multi`` two glyphs (left and right; which
one is ``[ref#1]`` is random, and half the captions name ``[ref#2]`` first), ``self`` stage-3 rows (the scene is
its own reference, mask and box = everything). Every reference row carries its glyph's place as ``box`` (the
trainer uses it with ``data.placement: box``) and its exact footprint as ``mask`` (L_route's target). Files are
stored ``UPSCALE`` x: targets 128 px, references 64 px, masks at the target's size. ``eval_cases`` draws held-out
scenes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .constants import NATIVE
from .world import HELD_OUT, Glyph, Scene, caption, make_scene, place_box, training_glyph, upscale


@dataclass
class Case:
    """A scene with its DreamO roles: ``indices[k]`` is glyph k's reference index, ``order`` the caption's order
    of the glyphs (left = 0)."""

    scene: Scene
    indices: list[int]
    order: list[int]

    @property
    def glyphs(self) -> list[Glyph]:
        return self.scene.glyphs

    def prompt(self) -> str:
        """The DreamO prompt: each glyph named by its placeholder, at its place."""
        return caption(self.scene, [f"[ref#{i}]" for i in self.indices], self.order)

    def plain_prompt(self) -> str:
        """The same prompt without identities (``a glyph at ...``): the plain caption and the text-only baseline."""
        return caption(self.scene, ["glyph"] * len(self.glyphs), self.order)

    def glyph_of(self, index: int) -> int:
        """Which glyph (left = 0) reference ``index`` shows."""
        return self.indices.index(index)


def random_case(rng: np.random.Generator, glyphs: list[Glyph]) -> Case:
    """A scene of ``glyphs`` with random reference indices (two glyphs: 1/2 for left/right at random) and caption
    order."""
    scene = make_scene(rng, glyphs)
    n = len(glyphs)
    indices = [1] if n == 1 else [int(i) for i in rng.permutation([1, 2])]
    order = list(range(n)) if rng.random() < 0.5 else list(range(n))[::-1]
    return Case(scene, indices, order)


def save_upscaled_png(pixels: np.ndarray, path: Path) -> str:
    """Write native pixels (h, w[, 3]) uint8 upscaled as the files hold them; return the row's path."""
    Image.fromarray(upscale(pixels)).save(path)
    return f"{path.parent.name}/{path.name}"


def write_row(root: Path, i: int, case: Case, self_ref: bool = False) -> dict:
    """Write one case's files under ``root``; return its metadata row."""
    scene = case.scene
    target = save_upscaled_png(scene.image, root / "targets" / f"{i:05d}.png")
    if self_ref:
        full = save_upscaled_png(np.full((NATIVE, NATIVE), 255, np.uint8), root / "masks" / f"{i:05d}_full.png")
        return {"target": target, "caption": f"this image of {case.prompt()[2:]}",
                "references": [{"image": target, "mask": full, "box": [0, 0, 1, 1], "task": "ip", "index": 1}]}
    refs = []
    for k, glyph in enumerate(case.glyphs):
        box = place_box(scene.places[k])
        refs.append({"image": save_upscaled_png(glyph.pixels(), root / "refs" / f"{i:05d}_{k}.png"),
                     "mask": save_upscaled_png(scene.mask(k).astype(np.uint8) * 255, root / "masks" / f"{i:05d}_{k}.png"),
                     "box": [box.x, box.y, box.w, box.h], "task": "ip", "index": case.indices[k]})
    refs.sort(key=lambda r: r["index"])
    return {"target": target, "caption": case.prompt(), "plain_caption": case.plain_prompt(), "references": refs}


def training_cases(n: int, n_glyphs: int, seed: int) -> list[Case]:
    """The cases of a training group: ``n`` scenes of ``n_glyphs`` fresh training glyphs each, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return [random_case(rng, [training_glyph(rng) for _ in range(n_glyphs)]) for _ in range(n)]


def write_group(root: Path, n: int, n_glyphs: int, seed: int, self_ref: bool = False) -> Path:
    """``n`` rows of ``n_glyphs`` fresh training glyphs each -> ``root/metadata.jsonl``."""
    for sub in ("targets", "refs", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rows = [write_row(root, i, case, self_ref) for i, case in enumerate(training_cases(n, n_glyphs, seed))]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


GROUP_SEEDS = {"single": 1, "multi": 2, "self": 3}  # + 10 x the datasets' seed


def write_toy_datasets(root: str | Path, n_single: int = 400, n_multi: int = 400, n_self: int = 64,
                       seed: int = 0) -> dict[str, Path]:
    """The three training groups under ``root`` (fresh training glyphs; ``seed`` draws them)."""
    root = Path(root)
    return {"single": write_group(root / "single", n_single, 1, seed * 10 + GROUP_SEEDS["single"]),
            "multi": write_group(root / "multi", n_multi, 2, seed * 10 + GROUP_SEEDS["multi"]),
            "self": write_group(root / "self", n_self, 1, seed * 10 + GROUP_SEEDS["self"], self_ref=True)}


def seen_glyphs(n: int, seed: int = 0) -> tuple[Glyph, ...]:
    """The glyphs of the first ``n`` rows of the ``single`` training group: identities the model was trained on
    (the learning curve's in-distribution check)."""
    return tuple(c.glyphs[0] for c in training_cases(n, 1, seed * 10 + GROUP_SEEDS["single"]))


def eval_cases(n: int, n_glyphs: int, seed: int, pool: tuple[Glyph, ...] = HELD_OUT) -> list[Case]:
    """``n`` cases of glyphs from ``pool`` (default the held-out ones). One glyph: the pool in turn, so each is
    used equally; two: two distinct glyphs of the pool at random."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        if n_glyphs == 1:
            glyphs = [pool[i % len(pool)]]
        else:
            glyphs = [pool[int(j)] for j in rng.choice(len(pool), size=n_glyphs, replace=False)]
        cases.append(random_case(rng, glyphs))
    return cases
