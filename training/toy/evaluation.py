"""Held-out evaluation of a trained toy DreamO: generate with the trainer's sampler, detect, score.

Modes on the same held-out scenes and seeds: ``refs`` (the DreamO prompt ``a [ref#1] on a gray background`` with
its references), ``text_only`` (no references; the prompt names no subject: ``an object on a gray background``)
and ``text_words`` (no references; the prompt names the held-out subject in words, which the base never saw
together: how far text alone gets). Fidelity with one reference, binding with two (``metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dreamo_core.generator.flux_forward import ReferenceTokens

from ..codec import decode_tokens, encode_tokens
from ..data import mask_to_tokens
from ..model import DreamOTrainModel, build_text_encoder
from ..sampling import euler_sample, mass_inside, response_maps
from .base import toy_model_config
from .codec import ToyCodec
from .constants import TOKEN_GRID, TRUE_CFG
from .datasets import EvalCase
from .metrics import binding, fidelity, has_color, wilson
from .world import anonymous_caption, caption, downscale, upscale

MODES = ("refs", "text_only", "text_words")


def case_references(cases: list[EvalCase], codec: ToyCodec) -> list[ReferenceTokens]:
    """One ReferenceTokens per subject slot, batched over ``cases`` (all with the same number of subjects)."""
    refs = []
    for k in range(len(cases[0].subjects)):
        pixels = torch.from_numpy(np.stack([upscale(c.scene.references[k]) for c in cases])).float() / 255.0
        tokens, grid = encode_tokens(codec, pixels)
        refs.append(ReferenceTokens(tokens, grid, k + 1))
    return refs


def prompts(cases: list[EvalCase], mode: str) -> list[str]:
    if mode == "refs":
        return [caption(c.scene, True) for c in cases]
    if mode == "text_words":
        return [caption(c.scene, False) for c in cases]
    return [anonymous_caption(c.scene) for c in cases]


def native_images(codec: ToyCodec, latents: torch.Tensor) -> np.ndarray:
    """(B, 64, 64) toy latents -> (B, 32, 32, 3) native images in [0, 1]."""
    pixels = decode_tokens(codec, latents, TOKEN_GRID).cpu().numpy()
    return np.stack([downscale(p) for p in pixels])


def load_base_model(base: str | Path) -> DreamOTrainModel:
    """The frozen toy base alone (diffusers folder ``base``: no LoRA; its tables exist but are unused without
    references) with the tiny text encoder, so that ``generate(..., "text_words", ...)`` samples exactly the base
    from words: the ceiling of what DreamO, a LoRA on this base, can draw."""
    from diffusers import FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(str(base), torch_dtype=torch.float32).eval()
    return DreamOTrainModel(transformer, build_text_encoder(toy_model_config())).eval()


@torch.no_grad()
def generate(model: DreamOTrainModel, cases: list[EvalCase], mode: str, seed: int, steps: int,
             codec: ToyCodec | None = None, chunk: int = 32, true_cfg: float = TRUE_CFG) -> np.ndarray:
    """Native images (B, 32, 32, 3) for ``cases`` in ``mode``, sampled with noise seed ``seed + chunk start``
    and true CFG ``true_cfg`` (negative prompt ``""``: no references, no subject, no place)."""
    codec = codec or ToyCodec()
    out = []
    for start in range(0, len(cases), chunk):
        part = cases[start : start + chunk]
        refs = case_references(part, codec) if mode == "refs" else []
        z = euler_sample(model, TOKEN_GRID, refs, prompts(part, mode), steps=steps, seed=seed * 1000 + start,
                         true_cfg=true_cfg, negative_prompt="")
        out.append(native_images(codec, z))
    return np.concatenate(out)


@dataclass
class Score:
    """Per-sample outcomes (0/1) of one metric, seed-major then case order (the same order in every run)."""

    outcomes: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return float(np.mean(self.outcomes)) if self.outcomes else 0.0

    def interval(self) -> tuple[float, float]:
        return wilson(int(np.sum(self.outcomes)), len(self.outcomes))

    def text(self) -> str:
        lo, hi = self.interval()
        return f"{self.rate:.2f} [{lo:.2f}, {hi:.2f}]"


def score_single(images: np.ndarray, cases: list[EvalCase]) -> dict[str, Score]:
    """``fidelity`` (colour + shape), ``fidelity_pattern`` (and pattern), ``color`` (colour only) for one-subject
    cases."""
    out = {"fidelity": Score(), "fidelity_pattern": Score(), "color": Score()}
    for img, c in zip(images, cases):
        out["color"].outcomes.append(int(has_color(img, c.subjects[0].color)))
        out["fidelity"].outcomes.append(int(fidelity(img, c.subjects[0])))
        out["fidelity_pattern"].outcomes.append(int(fidelity(img, c.subjects[0], with_pattern=True)))
    return out


def score_pair(images: np.ndarray, cases: list[EvalCase]) -> dict[str, Score]:
    """``binding`` (both subjects, by colour + shape), ``swap``, ``both_colors`` (colour only) for two-subject
    cases."""
    out = {"binding": Score(), "swap": Score(), "both_colors": Score()}
    for img, c in zip(images, cases):
        out["both_colors"].outcomes.append(int(all(has_color(img, s.color) for s in c.subjects)))
        b = binding(img, *c.subjects)
        out["binding"].outcomes.append(int(b.both))
        out["swap"].outcomes.append(int(b.swap))
    return out


def sample_scores(model: DreamOTrainModel, single: list[EvalCase], pairs: list[EvalCase], seeds: int, steps: int,
                  modes: tuple[str, ...] = MODES) -> dict[str, dict[str, Score]]:
    """The detector's scores of ``model``'s samples of the cases: {mode: {metric: Score}} over ``seeds`` sampling
    seeds (paired across models: same cases, same noise)."""
    model.eval()
    results: dict[str, dict[str, Score]] = {}
    for mode in modes:
        merged: dict[str, Score] = {}
        for seed in range(seeds):
            scores = {**score_single(generate(model, single, mode, seed, steps), single),
                      **score_pair(generate(model, pairs, mode, seed, steps), pairs)}
            for k, s in scores.items():
                merged.setdefault(k, Score()).outcomes.extend(s.outcomes)
        results[mode] = merged
    return results


@dataclass
class RoutingMass:
    """Share of each reference's image attention inside its own subject (``mass``) and the share uniform
    attention would give (``chance``: the mask's share of the tokens), one value per (reference, case)."""

    mass: np.ndarray
    chance: np.ndarray


@torch.no_grad()
def routing_mass(model: DreamOTrainModel, cases: list[EvalCase], sigma: float = 0.5) -> RoutingMass:
    """Where each reference looks on the noisy true scene (``sampling.response_maps`` at ``sigma``, in the layers
    L_route trains by default): the attention-routing effect of L_route, measured on held-out scenes."""
    codec = ToyCodec()
    pixels = torch.from_numpy(np.stack([upscale(c.scene.image) for c in cases])).float() / 255.0
    latents, grid = encode_tokens(codec, pixels)
    masks = torch.stack([torch.stack([mask_to_tokens(torch.from_numpy(upscale(m)).float()[..., None])
                                      for m in c.scene.masks]) for c in cases], dim=1)  # (n_refs, B, N)
    maps = response_maps(model, latents, grid, case_references(cases, codec), prompts(cases, "refs"), sigma)
    inside = (masks > 0.5).float()
    return RoutingMass(mass_inside(maps, masks).flatten().numpy(), inside.mean(-1).flatten().numpy())
