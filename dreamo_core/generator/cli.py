"""``dreamo``: headless DreamO generator. References + tasks + prompt -> PNG.

Without ``--flux`` it runs on an embedded tiny random-weight FLUX (says so loudly): a smoke run of the whole
pipeline, not a picture. With ``--flux DIR`` (FLUX.1-dev, diffusers layout) and the official DreamO files it
generates real images.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..conditioning.reference_images import TASKS
from .loading import LoraRequest, load_flux_generator, load_tiny_generator, preset_loras
from .pipeline import GenerationSettings, ReferenceInput

TINY_BANNER = (
    "No --flux given: running the embedded TINY RANDOM-WEIGHT FLUX. The output is structured noise that only\n"
    "proves the pipeline runs end to end. Point --flux at FLUX.1-dev (diffusers layout) and --dreamo at\n"
    "dreamo.safetensors for real images."
)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def load_image(path: str, what: str) -> torch.Tensor:
    """PNG/JPEG/WebP -> (H, W, C) float in [0, 1] (RGBA kept so its alpha can act as the mask)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what}: file not found: {p}")
    try:
        img = Image.open(p)
        img.load()
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{what}: {p} is not a readable image: {e}") from e
    mode = "RGBA" if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info else "RGB"
    if what.endswith("mask"):
        mode = "L"
    import numpy as np

    return torch.from_numpy(np.asarray(img.convert(mode), dtype=np.float32) / 255.0)


def parse_ref(items: list[str]) -> ReferenceInput:
    """``PATH [task=ip|id|style] [index=N] [mask=PATH]``."""
    path, opts = items[0], {}
    for item in items[1:]:
        key, sep, value = item.partition("=")
        if not sep or key not in ("task", "index", "mask"):
            raise ValueError(f"--ref {path}: unknown option {item!r}; use task=ip|id|style, index=1..9, mask=PATH")
        opts[key] = value
    task = opts.get("task", "ip")
    if task not in TASKS:
        raise ValueError(f"--ref {path}: task must be one of {', '.join(TASKS)}, got {task!r}")
    index = None
    if "index" in opts:
        if not opts["index"].isdigit():
            raise ValueError(f"--ref {path}: index must be an integer 1..9, got {opts['index']!r}")
        index = int(opts["index"])
    mask = load_image(opts["mask"], f"--ref {path} mask")[..., 0] if "mask" in opts else None
    if mask is not None and mask.ndim == 3:
        mask = mask[..., 0]
    return ReferenceInput(load_image(path, f"--ref {path}"), task, index, mask)


def demo_reference(size: int = 256) -> ReferenceInput:
    """A synthetic subject (a red disc on white) used when the tiny model runs without --ref."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2).float()
    img = torch.ones(size, size, 3)
    img[..., 1:] -= disc[..., None]
    return ReferenceInput(img, "ip", 1, None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dreamo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", default="a photo of the object on a wooden table", help="text prompt; may use [ref#1]..[ref#9]")
    p.add_argument("--ref", nargs="+", action="append", default=[], metavar="PATH [task=..] [index=..] [mask=..]",
                   help="a reference image (repeat for several); style prompts must start with 'generate a same style image.'")
    p.add_argument("--flux", type=Path, help="FLUX.1-dev folder in diffusers layout (model_index.json, transformer/, vae/, ...)")
    p.add_argument("--dreamo", type=Path, help="the original dreamo.safetensors (LoRA + embeddings)")
    p.add_argument("--lora", action="append", default=[], metavar="PATH[@STRENGTH]", help="extra LoRA to fuse (repeatable)")
    p.add_argument("--embeddings", type=Path, help="embedding.safetensors (when --dreamo is not given)")
    p.add_argument("--preset", choices=["v1", "v1.1"], help="fuse the official stack from --dreamo-dir")
    p.add_argument("--dreamo-dir", type=Path, help="folder with the official DreamO files (for --preset)")
    p.add_argument("--turbo", type=Path, help="FLUX.1-Turbo-Alpha LoRA to add to --preset (then use 12 steps)")
    p.add_argument("--width", type=int, help="output width (multiple of 16; default 1024, tiny 256)")
    p.add_argument("--height", type=int, help="output height (multiple of 16; default 1024, tiny 256)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--guidance", type=float, default=4.5)
    p.add_argument("--first-step-guidance", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ref-res", type=int, default=512, help="reference resolution (multiple of 16; id crops are always 512)")
    p.add_argument("--true-cfg", type=float, default=1.0, help="> 1 enables true CFG (negative pass has no references)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--neg-guidance", type=float, default=3.5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
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


def run(a: argparse.Namespace) -> Path:
    loras = loras_from_args(a)
    refs = [parse_ref(items) for items in a.ref]
    tiny = a.flux is None
    if tiny:
        print(TINY_BANNER, file=sys.stderr)
        gen = load_tiny_generator(loras, a.embeddings, a.seed)
        refs = refs or [demo_reference()]
    else:
        gen = load_flux_generator(a.flux, loras, a.embeddings, a.device, DTYPES[a.dtype])
    size = 256 if tiny else 1024
    settings = GenerationSettings(width=a.width or size, height=a.height or size, steps=a.steps, guidance=a.guidance,
                                  first_step_guidance=a.first_step_guidance, seed=a.seed, ref_res=a.ref_res,
                                  true_cfg=a.true_cfg, negative_prompt=a.negative_prompt, neg_guidance=a.neg_guidance)
    with tqdm(total=settings.steps, desc="DreamO", unit="step") as bar:
        image = gen.generate(a.prompt, refs, settings, progress=lambda i, n: bar.update(1))
    save_png(image, a.out)
    print(f"wrote {a.out} ({settings.width}x{settings.height}, {len(refs)} reference(s), seed {settings.seed})")
    return a.out


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
