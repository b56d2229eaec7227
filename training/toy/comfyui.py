"""``workflows/dreamo_toy.json`` executed in an in-process ComfyUI (the node tests and the main job's third path).

A real ComfyUI cannot load the toy's files by itself: its FLUX detection fixes the head width at 128 (the toy's is
32) and it has no loader for a hashed-word text encoder or the toy codec. Three loader nodes of this module
(``TOY_LOADERS``: added to ComfyUI's node list under their own names, nothing of ComfyUI replaced) take the place of
the workflow's UNETLoader / DualCLIPLoader / VAELoader in the API prompt; everything else (Load DreamO LoRA on the
exported file, Encode Reference, Reference Options, Text Encode, Apply, ModelSamplingFlux, KSampler, VAEDecode,
SaveImage) is the real node. ComfyUI must be set up first (``bench.comfy_harness.setup_comfy``).

- ``toy_flux``: ComfyUI's own FLUX model class (detected from a FLUX.1 key signature as a file would be) at the
  toy's sizes, weights converted from the diffusers folder by ComfyUI's ``convert_diffusers_mmdit``.
- ``ToyClip``: ``tokenize`` / ``encode_from_tokens_scheduled`` with the tiny text encoder's table (same words,
  same hashing, same 24-token padding, placeholder entries as DreamO Text Encode splices them).
- ``ToyComfyVAE``: ``training.codec.ToyCodec`` on ComfyUI's IMAGE layout with raw latents (FLUX latent format).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from dreamo_core.conditioning.packing import denormalize_latents, normalize_latents
from dreamo_core.spec import FLUX_DEV

from ..model import build_text_encoder
from ..text.tiny_hashed import TOKEN
from .base import toy_model_config
from .codec import ToyCodec
from .constants import NATIVE
from .datasets import Case
from .world import Glyph, Scene


def toy_flux(base: str | Path):
    """A ComfyUI ModelPatcher of the toy base (float32, CPU)."""
    import json

    import comfy.model_detection
    import comfy.model_patcher
    from safetensors.torch import load_file

    from bench.comfy_harness import flux1_key_signature

    cfg = json.loads((Path(base) / "config.json").read_text())
    sd = load_file(str(Path(base) / "diffusion_pytorch_model.safetensors"))
    converted = comfy.model_detection.convert_diffusers_mmdit(sd, "")
    unet_config = comfy.model_detection.detect_unet_config(flux1_key_signature(), "")
    hidden = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    unet_config.update(hidden_size=hidden, num_heads=cfg["num_attention_heads"], context_in_dim=cfg["joint_attention_dim"],
                       vec_in_dim=cfg["pooled_projection_dim"], depth=cfg["num_layers"],
                       depth_single_blocks=cfg["num_single_layers"], axes_dim=list(cfg["axes_dims_rope"]))
    mc = comfy.model_detection.model_config_from_unet_config(unet_config)
    mc.set_inference_dtype(torch.float32, None)
    model = mc.get_model({})
    missing, unexpected = model.diffusion_model.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"toy base conversion: missing {missing}, unexpected {unexpected}")
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


class ToyClip:
    """A ComfyUI CLIP stand-in with the toy's text encoder (``training.text.TinyTextEncoder`` of the toy base)."""

    def __init__(self):
        self.encoder = build_text_encoder(toy_model_config())
        self.tokenizer = SimpleNamespace(t5xxl=SimpleNamespace(end_token=None, pad_token=0))

    def token_id(self, word: str) -> int:
        return 1 + zlib.crc32(word.encode()) % (self.encoder.vocab - 1)

    def tokenize(self, text: str) -> dict:
        return {"t5xxl": [[(self.token_id(w), 1.0) for w in TOKEN.findall(text.lower())]]}

    def encode_from_tokens_scheduled(self, tokens: dict, add_dict: dict | None = None) -> list:
        entries = tokens["t5xxl"][0][: self.encoder.max_tokens]
        table = self.encoder.table
        rows = torch.zeros(self.encoder.max_tokens, table.shape[1])
        plain = torch.zeros_like(rows)  # placeholders count as words with a zero embedding in the pooled mean
        for i, (tok, *_) in enumerate(entries):
            if isinstance(tok, torch.Tensor):
                rows[i] = tok.float()
            else:
                rows[i] = plain[i] = table[tok]
        words = max(1, sum(1 for tok, *_ in entries if isinstance(tok, torch.Tensor) or tok != 0))
        pooled = plain.sum(0) / words @ self.encoder.pool_proj
        embeds = self.encoder.contextualize(rows[None])  # the rows enter the encoder's context, as in T5
        return [[embeds, {"pooled_output": pooled[None], **(add_dict or {})}]]


class ToyComfyVAE:
    """``ToyCodec`` with ComfyUI's VAE interface: IMAGE (B, H, W, 3) in [0, 1] <-> raw latents (B, 16, H/8, W/8)
    (z / 0.3611 + 0.1159, which the FLUX latent format maps back to the toy's model latents)."""

    def __init__(self):
        self.codec = ToyCodec()

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        z = self.codec.encode(pixels[..., :3].permute(0, 3, 1, 2).float() * 2 - 1)
        return denormalize_latents(z, FLUX_DEV.latent_shift, FLUX_DEV.latent_scale)

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        z = normalize_latents(raw.float(), FLUX_DEV.latent_shift, FLUX_DEV.latent_scale)
        return (self.codec.decode(z).permute(0, 2, 3, 1) + 1) / 2


def loader_node(output_type: str, make) -> type:
    """A ComfyUI node class that outputs ``make()`` as ``output_type`` and ignores its (string) inputs."""

    class ToyLoader:
        @classmethod
        def INPUT_TYPES(cls):  # noqa: N802 (ComfyUI's name)
            return {"optional": {}}

        RETURN_TYPES, FUNCTION, CATEGORY = (output_type,), "load", "dreamo/toy"

        def load(self, **_):
            return (make(),)

    return ToyLoader


def toy_loaders(base: str | Path) -> dict[str, tuple[str, type]]:
    """The workflow's loader class -> (the toy loader's node name, its class)."""
    return {"UNETLoader": ("DreamOToyBaseLoader", loader_node("MODEL", lambda: toy_flux(base))),
            "DualCLIPLoader": ("DreamOToyTextLoader", loader_node("CLIP", ToyClip)),
            "VAELoader": ("DreamOToyCodecLoader", loader_node("VAE", ToyComfyVAE))}


def toy_prompt(workflow: Path, base: str | Path, seed: int) -> dict:
    """The workflow as an API prompt (ComfyUI's own conversion of its widgets), its loaders swapped for the toy's
    (registered in ComfyUI's node list under their own names) and the KSampler's seed set."""
    import nodes
    from bench.comfy_harness.workflow_api import ui_to_api

    prompt = ui_to_api(json.loads(Path(workflow).read_text()), nodes.NODE_CLASS_MAPPINGS)
    for original, (name, cls) in toy_loaders(base).items():
        nodes.NODE_CLASS_MAPPINGS.setdefault(name, cls)
        for n in prompt.values():
            if n["class_type"] == original:
                n["class_type"], n["inputs"] = name, {}
    next(n for n in prompt.values() if n["class_type"] == "KSampler")["inputs"]["seed"] = seed
    return prompt


def run_toy_workflow(workflow: Path, base: str | Path, export: str | Path, references: dict[int, np.ndarray],
                     seed: int, work: Path) -> tuple[np.ndarray, dict]:
    """Execute the toy workflow: ``export`` as its ``dreamo_toy.safetensors``, ``references[k]`` (native uint8
    glyph pixels) as its ``dreamo_toy_ref{k}.png``; returns the saved image (H, W, 3) in [0, 1] and the prompt."""
    import asyncio
    import shutil

    import execution
    import folder_paths
    from PIL import Image

    from bench.comfy_harness import io_directories, prompt_executor, use_loras_folder

    from .world import upscale

    loras, inp, out = work / "loras", work / "input", work / "output"
    for d in (loras, inp, out):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy(export, loras / "dreamo_toy.safetensors")
    use_loras_folder(loras)
    for k, pixels in references.items():
        Image.fromarray(upscale(pixels)).save(inp / f"dreamo_toy_ref{k}.png")
    prompt = toy_prompt(workflow, base, seed)
    try:
        with io_directories(inp, out):
            valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("toy", prompt, None))
            if not valid:
                raise RuntimeError(f"the toy workflow does not validate: {error} {node_errors}")
            for old in out.glob("*.png"):
                old.unlink()
            executor = prompt_executor()
            executor.execute(prompt, "toy", {}, outputs)
            if not executor.success:
                raise RuntimeError(f"the toy workflow failed: {executor.status_messages[-1:]}")
    finally:
        folder_paths.filename_list_cache.clear()
    (saved,) = sorted(out.glob("DreamO_0*.png"))
    return np.asarray(Image.open(saved)).astype(np.float64) / 255.0, prompt


WORKFLOW_PROMPT = "a [ref#2] at top left and a [ref#1] at bottom right on a gray background"
WORKFLOW_PLACES = {1: (4, 4), 2: (0, 0)}  # each reference's place (cells), as the prompt captions it
WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "dreamo_toy.json"


def workflow_case(glyphs: dict[int, Glyph]) -> Case:
    """The workflow's prompt as a toy case with ``glyphs[k]`` as reference k (glyph 0 = the left one)."""
    places = sorted(WORKFLOW_PLACES.values(), key=lambda p: p[1])
    index_at = {place: index for index, place in WORKFLOW_PLACES.items()}
    indices = [index_at[p] for p in places]
    order = sorted(range(len(indices)), key=lambda k: WORKFLOW_PROMPT.index(f"[ref#{indices[k]}]"))
    case = Case(Scene(np.zeros((NATIVE, NATIVE, 3), np.uint8), [glyphs[i] for i in indices], places, "gray"),
                indices, order)
    assert case.prompt() == WORKFLOW_PROMPT, (case.prompt(), WORKFLOW_PROMPT)
    return case


def workflow_agreement(toy, comfy_path: Path, seed: int = 0) -> str:
    """One line: ``workflows/dreamo_toy.json`` run in ComfyUI at ``comfy_path`` on two held-out glyphs against the
    ``dreamo`` generator's image of the same seed (8-bit levels, as SaveImage writes)."""
    import tempfile

    from bench.comfy_harness import comfyui_version, setup_comfy

    from .measure import generator_image
    from .recipe import PLACED_ROUTE
    from .world import HELD_OUT

    setup_comfy(str(comfy_path))
    glyphs = {1: HELD_OUT[0], 2: HELD_OUT[3]}
    run = toy.kinds()[PLACED_ROUTE][0]  # the workflow's file: the first placed run with L_route
    with tempfile.TemporaryDirectory() as work:
        image, _ = run_toy_workflow(WORKFLOW, toy.base, toy.runs[run], {k: g.pixels() for k, g in glyphs.items()},
                                    seed, Path(work))
    gen = generator_image(toy, run, workflow_case(glyphs), seed, {})
    gen_levels = np.clip(255.0 * gen.repeat(4, 0).repeat(4, 1), 0, 255).astype(np.uint8) / 255.0
    diff = np.abs(image - gen_levels)
    version = ".".join(map(str, comfyui_version()))
    return (f"ComfyUI {version}: workflows/dreamo_toy.json on two held-out glyphs gave the dreamo generator's image "
            f"(max |difference| {diff.max() * 255:.1f} of 255 levels, {100 * (diff > 0).mean():.2f} % of the pixels "
            "off by a level)")
