"""Held-out evaluation of an exported toy DreamO: sample, read the glyphs, score (``metrics``).

A model is the toy base with an exported DreamO file merged (``load_exported_model``: the same two files and the
same merge as the ``dreamo`` generator, in the trainer's ``DreamOTrainModel`` so that cases sample in batches and
its attention can be read). Sampling is the trainer's sampler (the generator's schedule and noise, true CFG; a test
and the main job check it against the generator image for image). Modes on the same cases and seeds: ``refs``
(the DreamO prompt with its references; ``placed``: each reference's ids in its glyph's box, as
``data.placement: box`` trains) and ``text_only`` (no references; the prompt names no identity).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dreamo_core.generator.flux_forward import ReferenceTokens

from ..attention_capture import install_capture_processors
from ..codec import decode_tokens, encode_tokens
from ..data import mask_to_tokens
from ..model import DreamOTrainModel, build_text_encoder
from ..sampling import euler_sample, mass_inside, response_maps
from .base import toy_model_config
from .codec import ToyCodec
from .constants import GLYPH_CELLS, SAMPLE_STEPS, TOKEN_GRID, TRUE_CFG
from .datasets import Case
from .metrics import EXACT_CELLS, cell_accuracy, pair_score, retrieved
from .world import HELD_OUT, Glyph, downscale, place_box, upscale


def load_exported_model(base: str | Path, export: str | Path | None) -> DreamOTrainModel:
    """The toy base (diffusers folder) with an exported DreamO file merged as the generator merges it
    (``loading.apply_dreamo_files``), its tables and T5 rows, the tiny text encoder and the attention capture;
    ``export=None`` gives the plain base."""
    from diffusers import FluxTransformer2DModel

    from dreamo_core.generator.loading import LoraRequest, apply_dreamo_files
    from dreamo_core.spec import DreamOSpec

    transformer = FluxTransformer2DModel.from_pretrained(str(base), torch_dtype=torch.float32).eval()
    tables, rows = (apply_dreamo_files(transformer, [LoraRequest(Path(export), 1.0)], None,
                                       DreamOSpec.of_diffusers_config(transformer.config)) if export else (None, None))
    install_capture_processors(transformer)
    model = DreamOTrainModel(transformer, build_text_encoder(toy_model_config())).eval().requires_grad_(False)
    with torch.no_grad():
        if tables is not None:
            model.task_embedding.copy_(tables.task)
            model.idx_embedding.copy_(tables.idx)
        if rows is not None:
            model.t5_embedding.copy_(rows)
    return model


def case_references(cases: list[Case], placed: bool, codec: ToyCodec) -> list[ReferenceTokens]:
    """One ReferenceTokens per reference index (1, 2, ...), batched over ``cases``, which must share one layout when
    ``placed`` (each reference's box: its glyph's place)."""
    refs = []
    for index in range(1, len(cases[0].glyphs) + 1):
        glyphs = [c.glyphs[c.glyph_of(index)] for c in cases]
        pixels = torch.from_numpy(np.stack([upscale(g.pixels()) for g in glyphs])).float() / 255.0
        tokens, grid = encode_tokens(codec, pixels)
        boxes = {place_box(c.scene.places[c.glyph_of(index)]) for c in cases}
        if placed and len(boxes) != 1:
            raise ValueError(f"placed references of one batch need one layout, got boxes {sorted(boxes, key=repr)}")
        refs.append(ReferenceTokens(tokens, grid, index, boxes.pop() if placed else None))
    return refs


def layout(case: Case) -> tuple:
    """The places of references 1, 2, ...: cases with one layout share one id table (one batch)."""
    return tuple(case.scene.places[case.glyph_of(i)] for i in range(1, len(case.glyphs) + 1))


def native_images(codec: ToyCodec, latents: torch.Tensor) -> np.ndarray:
    """(B, 64, 64) toy latents -> (B, 32, 32, 3) native images in [0, 1]."""
    pixels = decode_tokens(codec, latents, TOKEN_GRID).cpu().numpy()
    return np.stack([downscale(p) for p in pixels])


def sample_seed(seed: int, case_number: int) -> int:
    """The noise seed of one case: the same case gets the same noise in every model and mode (paired samples)."""
    return seed * 100_003 + case_number


@torch.no_grad()
def generate(model: DreamOTrainModel, cases: list[Case], mode: str, placed: bool, seed: int = 0,
             steps: int = SAMPLE_STEPS, codec: ToyCodec | None = None, numbers: list[int] | None = None) -> np.ndarray:
    """Native images (B, 32, 32, 3) in [0, 1] for ``cases``: ``mode`` ``refs`` (DreamO prompt + references) or
    ``text_only`` (the plain prompt, no references; the DreamO model as the generator runs it without references:
    the target embedding is still added). Case i's noise is ``sample_seed(seed, numbers[i])`` (numbers
    default to 0, 1, ...) whatever the batching (cases are batched by layout); true CFG, empty negative prompt."""
    if mode not in ("refs", "text_only"):
        raise ValueError(f"mode must be 'refs' or 'text_only', got {mode!r}")
    codec = codec or ToyCodec()
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, case in enumerate(cases):
        groups[layout(case) if placed and mode == "refs" else ()].append(i)
    out: list[np.ndarray | None] = [None] * len(cases)
    for ids in groups.values():
        part = [cases[i] for i in ids]
        refs = case_references(part, placed, codec) if mode == "refs" else []
        prompts = [c.prompt() if mode == "refs" else c.plain_prompt() for c in part]
        noise = torch.cat([initial(sample_seed(seed, numbers[i] if numbers else i)) for i in ids])
        z = euler_sample(model, TOKEN_GRID, refs, prompts, steps=steps, noise=noise, true_cfg=TRUE_CFG,
                         negative_prompt="", dreamo_without_refs=True)
        for i, img in zip(ids, native_images(codec, z)):
            out[i] = img
    return np.stack(out)


def initial(seed: int) -> torch.Tensor:
    """(1, 64, 64) packed noise of one case, as the generator draws it for ``seed``."""
    from ..sampling import initial_noise

    return initial_noise(1, TOKEN_GRID, seed)


@dataclass
class Scores:
    """Per-sample values of each metric, in case order (the same order in every model: paired)."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(float(value))

    def extend(self, other: Scores) -> None:
        for k, v in other.values.items():
            self.values.setdefault(k, []).extend(v)

    def mean(self, name: str) -> float:
        return float(np.mean(self.values[name]))


def decoy(glyph: Glyph, gallery: tuple[Glyph, ...]) -> Glyph:
    """Another glyph of the gallery (the next one): what an identity-blind model matches by chance."""
    return gallery[(gallery.index(glyph) + 1) % len(gallery)]


def score_single(images: np.ndarray, cases: list[Case], gallery: tuple[Glyph, ...] = HELD_OUT) -> Scores:
    """One glyph per case: ``accuracy`` (cells right), ``exact`` (>= 90 % of cells), ``retrieval`` (nearest of the
    gallery), and ``chance_accuracy`` (the same cells scored against another gallery glyph)."""
    s = Scores()
    for img, c in zip(images, cases):
        glyph, place = c.glyphs[0], c.scene.places[0]
        acc = cell_accuracy(img, place, glyph)
        s.add("accuracy", acc)
        s.add("exact", round(acc * GLYPH_CELLS**2) >= EXACT_CELLS)
        s.add("retrieval", retrieved(img, place, glyph, gallery))
        s.add("chance_accuracy", cell_accuracy(img, place, decoy(glyph, gallery)))
    return s


def score_pairs(images: np.ndarray, cases: list[Case], gallery: tuple[Glyph, ...] = HELD_OUT) -> Scores:
    """Two glyphs per case: ``pair_accuracy`` (mean cells right), ``both_exact``, ``binding``, ``swap``, ``blend``."""
    s = Scores()
    for img, c in zip(images, cases):
        p = pair_score(img, c.scene.places, c.glyphs, gallery)
        s.add("pair_accuracy", np.mean([cell_accuracy(img, c.scene.places[k], c.glyphs[k]) for k in (0, 1)]))
        s.add("both_exact", p.exact)
        s.add("binding", p.binding)
        s.add("swap", p.swap)
        s.add("blend", p.blend)
    return s


def evaluate(model: DreamOTrainModel, single: list[Case], pairs: list[Case], placed: bool, seeds: int = 1,
             modes: tuple[str, ...] = ("refs",), steps: int = SAMPLE_STEPS,
             gallery: tuple[Glyph, ...] = HELD_OUT) -> dict[str, Scores]:
    """{mode: Scores} of ``model`` on the cases over ``seeds`` sampling seeds (retrieval among ``gallery``, which
    holds every glyph of the cases)."""
    out = {}
    for mode in modes:
        scores = Scores()
        for seed in range(seeds):
            if single:
                scores.extend(score_single(generate(model, single, mode, placed, seed, steps), single, gallery))
            if mode == "refs" and pairs:
                scores.extend(score_pairs(generate(model, pairs, mode, placed, seed, steps), pairs, gallery))
        out[mode] = scores
    return out


@dataclass
class RoutingMass:
    """Share of each reference's image attention inside its own glyph (``mass``) and the share uniform attention
    would give (``chance``: the glyph's share of the tokens), one value per (reference, case)."""

    mass: np.ndarray
    chance: np.ndarray


@torch.no_grad()
def routing_mass(model: DreamOTrainModel, cases: list[Case], placed: bool, sigma: float = 0.5) -> RoutingMass:
    """Where each reference looks on the noisy true scene (``sampling.response_maps`` at ``sigma``, in the layers
    L_route trains by default): the quantity L_route trains, measured on held-out two-glyph scenes."""
    codec = ToyCodec()
    masses, chances = [], []
    groups: dict[tuple, list[Case]] = defaultdict(list)
    for c in cases:
        groups[layout(c) if placed else ()].append(c)
    for part in groups.values():
        pixels = torch.from_numpy(np.stack([upscale(c.scene.image) for c in part])).float() / 255.0
        latents, grid = encode_tokens(codec, pixels)
        masks = torch.stack([torch.stack([mask_to_tokens(torch.from_numpy(upscale(c.scene.mask(c.glyph_of(i))))
                                                         .float()[..., None]) for c in part])
                             for i in range(1, len(part[0].glyphs) + 1)])  # (n_refs, B, N)
        maps = response_maps(model, latents, grid, case_references(part, placed, codec), [c.prompt() for c in part],
                             sigma)
        masses.append(mass_inside(maps, masks).flatten().numpy())
        chances.append((masks > 0.5).float().mean(-1).flatten().numpy())
    return RoutingMass(np.concatenate(masses), np.concatenate(chances))
