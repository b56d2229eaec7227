"""The toy world's base model — its FLUX.1-dev: a tiny ``FluxTransformer2DModel`` trained from scratch (full
training, every weight) as a text-to-image model of toy scenes, before any DreamO training.

DreamO then trains a LoRA + its tables on this frozen base (``training.toy.demo``), as the paper does on FLUX.1-dev.
Scenes are drawn fresh every step (1 or 2 fresh training glyphs, plain captions ``a glyph at top left on a gray
background``, the text-only baseline's prompt too; with probability ``EMPTY_P`` the caption is ``""``, the
unconditional that true CFG needs). The base learns to draw some glyph at the place it is told: which glyph, no
caption can say. Flow matching exactly as the trainer: z_t = (1 - t) z0 + t eps, target eps - z0, with t uniform (the
logit-normal of FLUX leaves sigma > 0.95, where the sampler starts, almost untrained at this budget). The text
encoder mixes in each token's five previous tokens (``tiny_text_context``): FLUX gives all text tokens one
position, and a bag of words cannot say which glyph belongs to which place.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dreamo_core.generator.flux_forward import dreamo_transformer_forward
from dreamo_core.routing.losses import flow_matching_loss, noisy_latents
from dreamo_core.spec import FLUX_DEV

from ..codec import encode_tokens
from ..config import ModelConfig
from ..model import build_text_encoder, random_transformer
from .codec import ToyCodec
from .constants import BASE_STEPS, EMPTY_P, GUIDANCE, TOKEN_GRID
from .datasets import random_case
from .world import training_glyph, upscale


def toy_model_config(seed: int = 0) -> ModelConfig:
    """The toy transformer's sizes (hidden 128 = 4 heads x 32, 2 double + 2 single blocks, text width 64; 1.86 M
    parameters); fp32 throughout (``bf16: false``:
    the toy base is a pretrained folder, which would otherwise mean a bf16 base)."""
    return ModelConfig(num_layers=2, num_single_layers=2, attention_head_dim=32, num_attention_heads=4,
                       joint_attention_dim=64, pooled_projection_dim=64, axes_dims_rope=[8, 12, 12],
                       text_max_tokens=24, tiny_text_context=5, seed=seed, bf16=False)


def toy_model_overrides(base: str | Path) -> list[str]:
    """The trainer's ``--model.*`` overrides for a DreamO run on the toy base folder ``base`` (``training.toy.demo``,
    ``training.toy.subject_tuning``): the tiny text encoder of ``toy_model_config``, the toy codec, fp32."""
    c = toy_model_config()
    return [f"--model.pretrained={base}", "--model.tiny_text=true", "--model.codec=toy", "--model.bf16=false",
            f"--model.joint_attention_dim={c.joint_attention_dim}",
            f"--model.pooled_projection_dim={c.pooled_projection_dim}",
            f"--model.text_max_tokens={c.text_max_tokens}", f"--model.tiny_text_context={c.tiny_text_context}"]


@dataclass
class BaseBatch:
    latents: torch.Tensor  # (B, 64, 64) packed tokens of TOKEN_GRID
    captions: list[str]


def scene_batch(rng: np.random.Generator, codec: ToyCodec, size: int) -> BaseBatch:
    """``size`` fresh scenes (1 or 2 training glyphs) encoded to tokens, with their plain captions."""
    images, captions = [], []
    for _ in range(size):
        case = random_case(rng, [training_glyph(rng) for _ in range(1 + int(rng.random() < 0.5))])
        images.append(upscale(case.scene.image))
        captions.append("" if rng.random() < EMPTY_P else case.plain_prompt())
    pixels = torch.from_numpy(np.stack(images)).float() / 255.0
    return BaseBatch(encode_tokens(codec, pixels)[0], captions)


def base_velocity(transformer: torch.nn.Module, text, z_t: torch.Tensor, t: torch.Tensor, captions: list[str],
                  grid: tuple[int, int]) -> torch.Tensor:
    """The plain FLUX forward (no references, no DreamO tables) on the tiny text encoder's embeddings."""
    embeds, pooled = text.encode_plain(captions)
    return dreamo_transformer_forward(transformer, z_t, grid, [], t, torch.full_like(t, GUIDANCE), pooled, embeds, None)


class PlainText:
    """The tiny text encoder without placeholder rows (captions of the base have none)."""

    def __init__(self, cfg: ModelConfig):
        self.encoder = build_text_encoder(cfg)
        self.rows = torch.zeros(FLUX_DEV.t5_placeholder_rows, cfg.joint_attention_dim)

    def encode_plain(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, pooled, _ = self.encoder.encode(captions, self.rows)
        return embeds, pooled


def train_base(out: str | Path, steps: int = BASE_STEPS, batch: int = 16, lr: float = 1e-3, seed: int = 0,
               log_every: int = 100, ema_decay: float = 0.995, snapshot_every: int = 0) -> Path:
    """Train the toy base from scratch; write the exponential moving average of its weights (``ema_decay``;
    sharper samples than the last iterate) to ``out`` as a diffusers folder (config.json + safetensors).
    ``snapshot_every`` > 0 also writes the average so far every that many steps (before the last) to
    ``snapshot_dir(out) / step_N`` (the base's learning curve); snapshots do not change the training."""
    cfg = toy_model_config(seed)
    transformer = random_transformer(cfg)
    ema = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    text, codec = PlainText(cfg), ToyCodec()
    opt = torch.optim.AdamW(transformer.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed + 100)
    g = torch.Generator().manual_seed(seed + 200)
    t0, running = time.time(), []
    for step in range(steps):
        warm, cos = min(1.0, (step + 1) / 100), 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr * warm * (0.1 + 0.9 * cos)
        b = scene_batch(rng, codec, batch)
        noise = torch.randn(b.latents.shape, generator=g)
        t = torch.rand(batch, generator=g)  # uniform: the sampler's first steps (sigma near 1) are trained too
        pred = base_velocity(transformer, text, noisy_latents(b.latents, noise, t), t, b.captions, TOKEN_GRID)
        loss = flow_matching_loss(pred, b.latents, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            decay = min(ema_decay, (1 + step) / (10 + step))  # short memory at the start
            for k, v in transformer.state_dict().items():
                ema[k].lerp_(v, 1 - decay) if v.is_floating_point() else ema[k].copy_(v)
        if snapshot_every and (step + 1) % snapshot_every == 0 and step + 1 < steps:
            save_state(transformer, ema, snapshot_dir(out) / f"step_{step + 1}")
        running.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            took = time.time() - t0
            print(f"  base step {step + 1}/{steps}: flow loss {np.mean(running):.4f}, {took / (step + 1):.2f} s/step, "
                  f"{took:.0f} s, about {took / (step + 1) * (steps - step - 1):.0f} s to go", flush=True)
            running = []
    save_state(transformer, ema, Path(out))
    return Path(out)


def snapshot_dir(out: str | Path) -> Path:
    """Where ``train_base(out, snapshot_every=...)`` writes its snapshots: ``<out>_snapshots`` beside ``out``."""
    out = Path(out)
    return out.parent / f"{out.name}_snapshots"


def save_state(transformer: torch.nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
    """Write ``transformer`` with the weights ``state`` as a diffusers folder; its own weights are put back."""
    own = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    transformer.load_state_dict(state)
    transformer.save_pretrained(str(folder), safe_serialization=True)
    transformer.load_state_dict(own)
