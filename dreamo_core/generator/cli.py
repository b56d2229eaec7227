"""``dreamo``: headless DreamO generator. References + tasks + prompt -> PNG.

Without ``--flux`` it runs on an embedded tiny random-weight FLUX (says so loudly): a smoke run of the whole
pipeline, not a picture. With ``--flux DIR`` (FLUX.1-dev, diffusers layout) and the official DreamO files it
generates real images.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..conditioning.placement import Box
from ..conditioning.reference_images import ID_CROP_SIZE, TASKS
from ..conditioning.reference_strength import DEFAULT_REFERENCE_OPTIONS
from .loading import LoraRequest, load_flux_generator, load_tiny_generator, preset_loras
from .pipeline import GenerationSettings, ReferenceInput, check_request

TINY_BANNER = (
    "No --flux given: running the embedded TINY RANDOM-WEIGHT FLUX. The output is structured noise that only\n"
    "proves the pipeline runs end to end. Point --flux at FLUX.1-dev (diffusers layout) and --dreamo at\n"
    "dreamo.safetensors for real images."
)
MODEL_DTYPE_BY_NAME = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}  # --dtype: FLUX's weights
DEFAULT_SETTINGS = GenerationSettings()  # the command's defaults are the generator's
TINY_SIZE = 256  # default output side on the tiny random FLUX (no --flux)


def load_image(path: str, what: str, mode: str | None = None) -> torch.Tensor:
    """PNG/JPEG/WebP -> (H, W, C) float in [0, 1] (RGBA kept so its alpha can act as the mask); mode "L" -> (H, W)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what}: file not found: {p}")
    try:
        img = Image.open(p)
        img.load()
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{what}: {p} is not a readable image: {e}") from e
    if mode is None:
        mode = "RGBA" if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info else "RGB"
    return torch.from_numpy(np.asarray(img.convert(mode), dtype=np.float32) / 255.0)


REF_OPTIONS = "task=ip|id|style, index=1..9, mask=PATH, strength=W, start=0..1, end=0..1, box=X,Y,W,H"


def number(path: str, key: str, value: str) -> float:
    try:
        v = float(value)
    except ValueError as e:
        raise ValueError(f"--ref {path}: {key} must be a number, got {value!r}") from e
    if not math.isfinite(v):
        raise ValueError(f"--ref {path}: {key} must be a finite number, got {value!r}")
    return v


def parse_box(path: str, value: str) -> Box:
    """``X,Y,W,H`` fractions of the output (e.g. ``0.5,0,0.5,1`` = the right half)."""
    parts = value.split(",")
    if len(parts) != 4:
        raise ValueError(f"--ref {path}: box must be X,Y,W,H (four fractions of the output size), got {value!r}")
    try:
        return Box(*(number(path, "box", v) for v in parts))
    except ValueError as e:
        raise ValueError(f"--ref {path}: {e}" if not str(e).startswith("--ref") else str(e)) from e


def parse_ref(items: list[str]) -> ReferenceInput:
    """``PATH [task=..] [index=N] [mask=PATH] [strength=W] [start=P] [end=P] [box=X,Y,W,H]``."""
    path, opts = items[0], {}
    for item in items[1:]:
        key, sep, value = item.partition("=")
        if not sep or key not in ("task", "index", "mask", "strength", "start", "end", "box"):
            raise ValueError(f"--ref {path}: unknown option {item!r}; use {REF_OPTIONS}")
        opts[key] = value
    task = opts.get("task", "ip")
    if task not in TASKS:
        raise ValueError(f"--ref {path}: task must be one of {', '.join(TASKS)}, got {task!r}")
    index = None
    if "index" in opts:
        if not opts["index"].isdigit():
            raise ValueError(f"--ref {path}: index must be an integer 1..9, got {opts['index']!r}")
        index = int(opts["index"])
    mask = load_image(opts["mask"], f"--ref {path} mask", mode="L") if "mask" in opts else None
    default = DEFAULT_REFERENCE_OPTIONS
    ref = ReferenceInput(load_image(path, f"--ref {path}"), task, index, mask,
                         strength=number(path, "strength", opts["strength"]) if "strength" in opts else default.strength,
                         start_percent=number(path, "start", opts["start"]) if "start" in opts else default.start_percent,
                         end_percent=number(path, "end", opts["end"]) if "end" in opts else default.end_percent,
                         box=parse_box(path, opts["box"]) if "box" in opts else default.box)
    ref.check(f"--ref {path}")
    return ref


def demo_reference(size: int = 256) -> ReferenceInput:
    """A synthetic subject (a red disc on white) used when the tiny model runs without --ref."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2).float()
    img = torch.ones(size, size, 3)
    img[..., 1:] -= disc[..., None]
    return ReferenceInput(img, "ip", 1, None)


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULT_SETTINGS
    p = argparse.ArgumentParser(prog="dreamo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", default="a photo of the object on a wooden table", help="text prompt; may use [ref#1]..[ref#9]")
    p.add_argument("--ref", nargs="+", action="append", default=[], metavar="PATH [OPTION=VALUE ...]",
                   help=f"a reference image (repeat for several), options {REF_OPTIONS}; style prompts must start "
                        "with 'generate a same style image.'")
    p.add_argument("--flux", type=Path, help="FLUX.1-dev folder in diffusers layout (model_index.json, transformer/, vae/, ...)")
    p.add_argument("--dreamo", type=Path, help="the original dreamo.safetensors (LoRA + embeddings)")
    p.add_argument("--lora", action="append", default=[], metavar="PATH[@STRENGTH]", help="extra LoRA to fuse (repeatable)")
    p.add_argument("--embeddings", type=Path, help="embedding.safetensors (when --dreamo is not given)")
    p.add_argument("--preset", choices=["v1", "v1.1"], help="fuse the official stack from --dreamo-dir")
    p.add_argument("--dreamo-dir", type=Path, help="folder with the official DreamO files (for --preset)")
    p.add_argument("--turbo", type=Path, help="FLUX.1-Turbo-Alpha LoRA to add to --preset (then use 12 steps)")
    p.add_argument("--width", type=int, help=f"output width (multiple of 16; default {d.width}, tiny {TINY_SIZE})")
    p.add_argument("--height", type=int, help=f"output height (multiple of 16; default {d.height}, tiny {TINY_SIZE})")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--guidance", type=float, default=d.guidance)
    p.add_argument("--first-step-guidance", type=float, default=d.first_step_guidance)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--ref-res", type=int, default=d.ref_res,
                   help=f"reference resolution (multiple of 16; id crops are always {ID_CROP_SIZE})")
    p.add_argument("--true-cfg", type=float, default=d.true_cfg,
                   help="> 1 enables true CFG (negative pass has no references)")
    p.add_argument("--negative-prompt", default=d.negative_prompt)
    p.add_argument("--neg-guidance", type=float, default=d.neg_guidance)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(MODEL_DTYPE_BY_NAME), default="bf16")
    p.add_argument("--out", type=Path, default=Path("dreamo.png"))
    return p


def loras_from_args(a: argparse.Namespace) -> list[LoraRequest]:
    reqs = [LoraRequest(a.dreamo, 1.0)] if a.dreamo else []
    if a.preset:
        if not a.dreamo_dir:
            raise ValueError("--preset needs --dreamo-dir (the folder with the official DreamO files)")
        reqs = preset_loras(a.dreamo_dir, a.preset, a.turbo)
    for text in a.lora:
        reqs.append(LoraRequest.parse(text))
    for r in reqs:
        if not r.path.is_file():
            raise FileNotFoundError(f"DreamO/LoRA file not found: {r.path}")
    return reqs


def checked_output(path: Path) -> Path:
    """``--out`` checked before any generation: not a folder, its folder exists or can be made, writable."""
    if path.is_dir():
        raise ValueError(f"--out {path}: is a folder; give a file name such as {path / 'dreamo.png'}")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {path}: cannot create the folder {folder}: {e}") from e
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--out {path}: the folder {folder} is not writable")
    return path


def checked_device(name: str) -> str:
    """``--device`` as torch knows it; ValueError when it names an accelerator this machine does not have."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"--device {name!r}: not a torch device ({e})") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); "
                         "use --device cpu")
    return name


def settings_from_args(a: argparse.Namespace, tiny: bool) -> GenerationSettings:
    width, height = (TINY_SIZE, TINY_SIZE) if tiny else (DEFAULT_SETTINGS.width, DEFAULT_SETTINGS.height)
    return GenerationSettings(width=width if a.width is None else a.width, height=height if a.height is None else a.height,
                              steps=a.steps, guidance=a.guidance, first_step_guidance=a.first_step_guidance,
                              seed=a.seed, ref_res=a.ref_res, true_cfg=a.true_cfg, negative_prompt=a.negative_prompt,
                              neg_guidance=a.neg_guidance)


def run(a: argparse.Namespace) -> Path:
    loras = loras_from_args(a)
    refs = [parse_ref(items) for items in a.ref]
    tiny = a.flux is None
    settings = settings_from_args(a, tiny)
    out = checked_output(a.out)
    device = checked_device(a.device)
    if tiny and not refs:
        refs = [demo_reference()]
    check_request(a.prompt, refs, settings)  # every check that needs no model, before one is built
    if tiny:
        print(TINY_BANNER, file=sys.stderr)
        gen = load_tiny_generator(loras, a.embeddings, a.seed)
    else:
        gen = load_flux_generator(a.flux, loras, a.embeddings, device, MODEL_DTYPE_BY_NAME[a.dtype])
    with tqdm(total=settings.steps, desc="DreamO", unit="step") as bar:
        image = gen.generate(a.prompt, refs, settings, progress=lambda i, n: bar.update(1))
    save_png(image, out)
    print(f"wrote {out} ({settings.width}x{settings.height}, {len(refs)} reference(s), seed {settings.seed})")
    return out


def save_png(image: torch.Tensor, path: Path) -> None:
    """(H, W, 3) in [0, 1] -> PNG."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image.numpy() * 255).round().astype("uint8")).save(path)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[DreamO] %(message)s")
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"dreamo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
