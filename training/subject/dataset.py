"""The self-reference dataset of one subject image (DreamTuner-style subject tuning), in the trainer's
``metadata.jsonl`` format (``training/data.py``).

Every row has the same reference: the subject on white (DreamTuner's first fine-tuning change; it is also what
DreamO's ``ip`` preprocessing does with a mask). Each row's target is one augmented view of the subject: its mask's
bounding box, flipped with probability 0.5, scaled so its longer side is a random fraction of the canvas, placed
at a random position on a plain background colour; the target mask (the subject's footprint in that view) drives
L_route. Without a mask the whole image is the subject: views are flipped / scaled / placed the same way, but no
mask is written (no L_route) because the subject's footprint is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dreamo_core.conditioning.reference_images import composite_on_white, resize_area

from ..data import save_gray, save_rgb, write_rows

REFERENCE = "reference.png"
WHITE = (255, 255, 255)
BACKGROUNDS: dict[str, tuple[int, int, int]] = {  # plain colours of the target views (white first: the paper's)
    "white": WHITE, "gray": (128, 128, 128), "black": (20, 20, 20), "beige": (222, 206, 170),
    "sky": (150, 190, 230), "green": (110, 160, 110),
}
MASK_THRESHOLD = 0.5  # a pixel with mask >= this belongs to the subject's bounding box


@dataclass(frozen=True)
class Augment:
    """View augmentation: flip probability, the subject's longer side as a fraction of the canvas, colours, and the
    grid (pixels) the subject's top-left corner snaps to (16: on the token grid; 1: anywhere)."""

    flip: float = 0.5
    scale: tuple[float, float] = (0.55, 0.95)
    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS)
    align: int = 1


def read_rgb_and_mask(image: str | Path, mask: str | Path | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(H, W, 3) float [0, 1] and the subject mask (H, W) [0, 1] from ``mask`` (white = subject), else from the
    image's alpha channel, else None. ValueError naming the file when something is wrong."""
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"IMAGE {path}: file not found")
    try:
        with Image.open(path) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    except OSError as e:
        raise ValueError(f"IMAGE {path}: not a readable image ({e})") from e
    rgb = torch.from_numpy(rgba[..., :3].copy())
    fg = torch.from_numpy(rgba[..., 3].copy()) if has_alpha else None
    if mask is not None:
        mpath = Path(mask)
        if not mpath.is_file():
            raise FileNotFoundError(f"--mask {mpath}: file not found")
        try:
            with Image.open(mpath) as im:
                m = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        except OSError as e:
            raise ValueError(f"--mask {mpath}: not a readable image ({e})") from e
        if m.shape != tuple(rgb.shape[:2]):
            raise ValueError(f"--mask {mpath}: is {m.shape[1]}x{m.shape[0]} but IMAGE is "
                             f"{rgb.shape[1]}x{rgb.shape[0]} (width x height); the mask must match the image")
        fg = torch.from_numpy(m.copy())
    if fg is not None and float(fg.max()) < MASK_THRESHOLD:
        raise ValueError("the subject mask selects nothing (no pixel >= 0.5; white = subject): pass --mask with "
                         "the subject in white, or an RGBA image whose alpha covers the subject")
    return rgb, fg


def subject_box(fg: torch.Tensor, margin: float = 0.04) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the pixels >= MASK_THRESHOLD, grown by ``margin`` of the image size."""
    ys, xs = torch.nonzero(fg >= MASK_THRESHOLD, as_tuple=True)
    h, w = fg.shape
    my, mx = round(margin * h), round(margin * w)
    return (max(0, int(ys.min()) - my), max(0, int(xs.min()) - mx), min(h, int(ys.max()) + 1 + my),
            min(w, int(xs.max()) + 1 + mx))


def augmented_view(rgb: torch.Tensor, fg: torch.Tensor | None, size: int, aug: Augment,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One (size, size, 3) target view and its (size, size) subject footprint (see the module docstring)."""
    fg_full = torch.ones(rgb.shape[:2]) if fg is None else fg
    top, left, bottom, right = subject_box(fg_full)
    crop, mask = rgb[top:bottom, left:right], fg_full[top:bottom, left:right]
    if rng.random() < aug.flip:
        crop, mask = crop.flip(1), mask.flip(1)
    ch, cw = crop.shape[:2]
    side = rng.uniform(*aug.scale) * size
    h, w = max(1, round(side * ch / max(ch, cw))), max(1, round(side * cw / max(ch, cw)))
    crop, mask = resize_area(crop, (h, w)), resize_area(mask[..., None], (h, w))[..., 0]
    y, x = (int(rng.integers(0, (size - n) // aug.align + 1)) * aug.align for n in (h, w))
    colour = BACKGROUNDS[aug.backgrounds[int(rng.integers(len(aug.backgrounds)))]]
    canvas = torch.tensor(colour, dtype=torch.float32).div(255.0).expand(size, size, 3).clone()
    footprint = torch.zeros(size, size)
    blend = mask[..., None] if fg is not None else torch.ones(h, w, 1)
    canvas[y:y + h, x:x + w] = crop * blend + canvas[y:y + h, x:x + w] * (1 - blend)
    footprint[y:y + h, x:x + w] = mask
    return canvas, footprint


def write_subject_dataset(image: str | Path, mask: str | Path | None, folder: str | Path, views: int, size: int,
                          caption: str, plain_caption: str | None, aug: Augment = Augment(), seed: int = 0,
                          max_reference_side: int = 1024) -> Path:
    """Write ``views`` rows (``targets/NNNN.png``, ``masks/NNNN.png``, the shared ``reference.png``) and
    ``metadata.jsonl`` under ``folder``. ``caption`` must hold ``[ref#1]``. Returns the folder."""
    if "[ref#1]" not in caption:
        raise ValueError(f"--caption {caption!r}: must contain [ref#1] (the subject's placeholder)")
    if size % 16 or size < 32:
        raise ValueError(f"--size {size}: must be a multiple of 16 and at least 32")
    unknown = sorted(set(aug.backgrounds) - set(BACKGROUNDS))
    if unknown:
        raise ValueError(f"--backgrounds: unknown colour(s) {unknown}; known: {sorted(BACKGROUNDS)}")
    rgb, fg = read_rgb_and_mask(image, mask)
    root = Path(folder)
    for sub in ("targets", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    reference = composite_on_white(rgb, fg) if fg is not None else rgb
    h, w = reference.shape[:2]
    if max(h, w) > max_reference_side:  # the trainer area-resizes it to ~ref_res² anyway; keep the file small
        k = max_reference_side / max(h, w)
        reference = resize_area(reference, (max(16, round(h * k)), max(16, round(w * k))))
    save_rgb(reference, root / REFERENCE)
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(views):
        target, footprint = augmented_view(rgb, fg, size, aug, rng)
        save_rgb(target, root / "targets" / f"{v:04d}.png")
        ref = {"image": REFERENCE, "task": "ip", "index": 1}
        if fg is not None:
            save_gray(footprint, root / "masks" / f"{v:04d}.png")
            ref["mask"] = f"masks/{v:04d}.png"
        row = {"target": f"targets/{v:04d}.png", "caption": caption, "references": [ref]}
        if plain_caption:
            row["plain_caption"] = plain_caption
        rows.append(row)
    write_rows(root, rows)
    return root


