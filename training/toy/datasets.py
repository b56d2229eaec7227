"""Toy-world datasets in the trainer's format (``training/data.py``) and the held-out evaluation cases.

Groups (all from ``TRAIN_SUBJECTS``): ``single`` one subject, ``multi`` two subjects (left = ``[ref#1]``), ``self``
stage-3 rows (the scene is its own reference, mask = everything). Files are stored 4x (``world.upscale``):
targets 128 px, references 96 px, masks at the target's size. ``eval_cases`` draws held-out scenes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .constants import NATIVE
from .world import HELD_OUT, TRAIN_SUBJECTS, Scene, Subject, caption, draw_subjects, make_scene, upscale


def save_upscaled_png(pixels: np.ndarray, path: Path) -> str:
    """Write native pixels (h, w[, 3]) uint8 upscaled as the files hold them; return the row's path
    (``folder/name``)."""
    Image.fromarray(upscale(pixels)).save(path)
    return f"{path.parent.name}/{path.name}"


def write_row(root: Path, i: int, scene: Scene, self_ref: bool = False) -> dict:
    """Write one scene's files under ``root``; return its metadata row."""
    target = save_upscaled_png(scene.image, root / "targets" / f"{i:05d}.png")
    refs = []
    if self_ref:
        full = save_upscaled_png(np.full((NATIVE, NATIVE), 255, np.uint8), root / "masks" / f"{i:05d}_full.png")
        refs.append({"image": target, "mask": full, "task": "ip", "index": 1})
        return {"target": target, "caption": f"this image of a [ref#1] at {scene.places[0]} on a {scene.background} background",
                "references": refs}
    for k, (ref, mask) in enumerate(zip(scene.references, scene.masks), start=1):
        refs.append({"image": save_upscaled_png(ref, root / "refs" / f"{i:05d}_{k}.png"),
                     "mask": save_upscaled_png(mask.astype(np.uint8) * 255, root / "masks" / f"{i:05d}_{k}.png"),
                     "task": "ip", "index": k})
    return {"target": target, "caption": caption(scene, True), "plain_caption": caption(scene, False),
            "references": refs}


def write_group(root: Path, n: int, n_subjects: int, seed: int, self_ref: bool = False,
                pool: tuple[Subject, ...] = TRAIN_SUBJECTS) -> Path:
    """``n`` rows with ``n_subjects`` subjects each from ``pool`` -> ``root/metadata.jsonl``."""
    for sub in ("targets", "refs", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = [write_row(root, i, make_scene(rng, draw_subjects(rng, pool, n_subjects)), self_ref) for i in range(n)]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def write_toy_datasets(root: str | Path, n_single: int = 400, n_multi: int = 400, n_self: int = 64,
                       seed: int = 0) -> dict[str, Path]:
    """The three training groups under ``root`` (training subjects only)."""
    root = Path(root)
    return {"single": write_group(root / "single", n_single, 1, seed),
            "multi": write_group(root / "multi", n_multi, 2, seed + 1),
            "self": write_group(root / "self", n_self, 1, seed + 2, self_ref=True)}


@dataclass
class EvalCase:
    """A held-out scene: its subjects (left to right), background and native reference images."""

    scene: Scene

    @property
    def subjects(self) -> list[Subject]:
        return self.scene.subjects


def eval_cases(n: int, n_subjects: int, seed: int, pool: tuple[Subject, ...] = HELD_OUT) -> list[EvalCase]:
    """``n`` scenes of subjects from ``pool`` (default the held-out ones; ``TRAIN_SUBJECTS`` for the base's
    in-distribution ceiling), one subject cycling over the pool so each is used equally."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        if n_subjects == 1:
            subjects = [pool[i % len(pool)]]
        else:
            subjects = draw_subjects(rng, pool, n_subjects)
        cases.append(EvalCase(make_scene(rng, subjects)))
    return cases
