"""The toy DreamO's base, text encoder and codec as ComfyUI objects, for executing ``workflows/dreamo_toy.json``.

A real ComfyUI cannot load the toy's files by itself: its FLUX detection fixes the head width at 128 (the toy's is
32) and it has no loader for a hashed-word text encoder or the toy codec. These stand in for the workflow's
UNETLoader / DualCLIPLoader / VAELoader only; everything else (Load DreamO LoRA on the exported file, Encode
Reference, Text Encode, Apply, ModelSamplingFlux, KSampler, VAEDecode) is the real node.

- ``toy_flux``: ComfyUI's own FLUX model class (detected from a FLUX.1 key signature as a file would be) at the
  toy's sizes, weights converted from the diffusers folder by ComfyUI's ``convert_diffusers_mmdit``.
- ``ToyClip``: ``tokenize`` / ``encode_from_tokens_scheduled`` with the tiny text encoder's table (same words,
  same hashing, same 24-token padding, placeholder entries as DreamO Text Encode splices them).
- ``ToyComfyVAE``: ``training.codec.ToyCodec`` on ComfyUI's IMAGE layout with raw latents (FLUX latent format).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from types import SimpleNamespace

import torch

from dreamo_core.conditioning.packing import denormalize_latents, normalize_latents
from dreamo_core.spec import FLUX_DEV
from training.model import build_text_encoder
from training.text.tiny_hashed import TOKEN
from training.toy.base import toy_model_config
from training.toy.codec import ToyCodec


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
