"""On-policy preference pairs: sample a model several times per condition, score every sample, keep the best against
a clearly worse one, and write them as a pair dataset (``dataset.py``'s format) the stage trains on.

``build_preference_pairs(prompts, sample, score, out)`` takes any sampler ``sample(prompt, seed) -> (H, W, 3)`` in
[0, 1] and any scorer ``score(prompt, image) -> float`` (higher is better; e.g. a detector's 1 for the right
subject at the right place, 0 for a wrong or blended one). Sample s of prompt p uses seed
``seed + p * samples_per_prompt + s``. Per prompt the pairs are ``choose_pairs``'s. ``trainer_sampler`` makes the
sampler from a trainer model (on-policy: the stage's own starting model, ``objective.preference_model``).

Written in ``out``: ``metadata.jsonl`` (one row per pair; the prompt's region box, if any, as ``region_box``),
``samples/`` (the paired samples), ``refs/`` (each reference image once), ``scores.jsonl`` (every prompt's seeds,
scores and chosen pairs, also the unpaired ones).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamo_core.conditioning.placement import Box as PlacementBox
from dreamo_core.generator.flux_forward import ReferenceTokens

from ..codec import Codec, decode_tokens, encode_tokens
from ..data import load_rgb, ref_size, reference_pixels, save_rgb, write_rows
from ..model import DreamOTrainModel
from ..sampling import euler_sample


@dataclass(frozen=True)
class PairReference:
    """One reference of a prompt: an image file, its task (ip / id / style), index 1..9 (``[ref#index]``) and an
    optional placement box (written to the row; the sampler places the reference there)."""

    image: Path
    task: str
    index: int
    box: PlacementBox | None = None


@dataclass(frozen=True)
class PairPrompt:
    """A condition to sample: ``caption`` with the references' ``[ref#k]``, the references, an optional
    ``plain_caption`` and the ``region_box`` (x0, y0, x1, y1) pixels of the samples where the preference is judged
    (the localized stage enlarges it by ``preference.dilation``)."""

    caption: str
    references: tuple[PairReference, ...]
    plain_caption: str | None = None
    region_box: tuple[int, int, int, int] | None = None


Sampler = Callable[[PairPrompt, int], torch.Tensor]
Scorer = Callable[[PairPrompt, torch.Tensor], float]


@dataclass
class PairSet:
    """What ``build_preference_pairs`` wrote: the dataset folder, the pair count, and per prompt the scores of its
    samples and its (preferred, rejected) sample indices."""

    folder: Path
    pairs: int
    scores: list[list[float]]
    chosen: list[list[tuple[int, int]]]

    @property
    def prompts_paired(self) -> int:
        return sum(bool(c) for c in self.chosen)


def choose_pairs(scores: Sequence[float], min_gap: float, max_pairs: int) -> list[tuple[int, int]]:
    """(preferred, rejected) sample indices of one prompt: the preferred are the samples with the best score (in
    sample order), the rejected those scoring at least ``min_gap`` below it (worst first, then sample order);
    the k-th preferred goes with the k-th rejected, at most ``max_pairs`` pairs. None when no sample is that much
    worse (a prompt the model already gets right, or always wrong, teaches no preference)."""
    if not min_gap > 0 or max_pairs < 1:
        raise ValueError(f"choose_pairs: min_gap must be > 0 and max_pairs >= 1, got {min_gap}, {max_pairs}")
    best = max(scores)
    preferred = [i for i, s in enumerate(scores) if s == best]
    rejected = sorted((i for i, s in enumerate(scores) if s <= best - min_gap), key=lambda i: (scores[i], i))
    return list(zip(preferred, rejected))[:max_pairs]


def copy_references(prompts: Sequence[PairPrompt], out: Path) -> dict[Path, str]:
    """Every distinct reference image copied once to ``out/refs/`` -> its path relative to ``out``."""
    (out / "refs").mkdir(parents=True, exist_ok=True)
    names: dict[Path, str] = {}
    for prompt in prompts:
        for r in prompt.references:
            src = Path(r.image).resolve()
            if src not in names:
                names[src] = f"refs/{len(names):05d}{src.suffix}"
                shutil.copyfile(src, out / names[src])
    return names


def pair_row(prompt: PairPrompt, preferred: str, rejected: str, refs: dict[Path, str]) -> dict:
    """The dataset row of one pair."""
    row = {"preferred": preferred, "rejected": rejected, "caption": prompt.caption,
           "references": [{"image": refs[Path(r.image).resolve()], "task": r.task, "index": r.index,
                           **({"box": [r.box.x, r.box.y, r.box.w, r.box.h]} if r.box is not None else {})}
                          for r in prompt.references]}
    if prompt.plain_caption is not None:
        row["plain_caption"] = prompt.plain_caption
    if prompt.region_box is not None:
        row["region_box"] = list(prompt.region_box)
    return row


def build_preference_pairs(prompts: Sequence[PairPrompt], sample: Sampler, score: Scorer, out: str | Path,
                           samples_per_prompt: int = 4, min_gap: float = 0.5, max_pairs_per_prompt: int = 1,
                           seed: int = 0) -> PairSet:
    """Sample, score and pair (the module docstring); returns what was written. ValueError when no prompt gave a
    pair (nothing to train on)."""
    if samples_per_prompt < 2:
        raise ValueError(f"build_preference_pairs: samples_per_prompt must be >= 2, got {samples_per_prompt}")
    out = Path(out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    refs = copy_references(prompts, out)
    rows, all_scores, all_chosen, log = [], [], [], []
    for p, prompt in enumerate(prompts):
        seeds = [seed + p * samples_per_prompt + s for s in range(samples_per_prompt)]
        images = [sample(prompt, s) for s in seeds]
        scores = [float(score(prompt, image)) for image in images]
        chosen = choose_pairs(scores, min_gap, max_pairs_per_prompt)
        for w, lose in chosen:
            names = []
            for i in (w, lose):
                names.append(f"samples/p{p:05d}_s{i}.png")
                save_rgb(images[i].cpu(), out / names[-1])
            rows.append(pair_row(prompt, names[0], names[1], refs))
        all_scores.append(scores)
        all_chosen.append(chosen)
        log.append(json.dumps({"prompt": p, "caption": prompt.caption, "seeds": seeds, "scores": scores,
                               "pairs": [list(c) for c in chosen]}))
    (out / "scores.jsonl").write_text("".join(f"{line}\n" for line in log))
    if not rows:
        raise ValueError(f"build_preference_pairs: none of the {len(prompts)} prompts gave a pair (no sample scored "
                         f"{min_gap} below its prompt's best); see {out / 'scores.jsonl'}")
    write_rows(out, rows)
    return PairSet(out, len(rows), all_scores, all_chosen)


def trainer_sampler(model: DreamOTrainModel, codec: Codec, size: tuple[int, int], ref_res: int, steps: int = 28,
                    guidance: float = 3.5, true_cfg: float = 1.0, negative_prompt: str = "") -> Sampler:
    """A ``Sampler`` from a trainer model: the references prepared as the trainer's rows are (``ref_size`` at
    ``ref_res``), ``training.sampling.euler_sample`` (the generator's schedule and noise; ``true_cfg`` > 1 adds the
    official negative pass) at ``size`` (H, W) pixels, decoded by ``codec``."""
    grid = (size[0] // 16, size[1] // 16)

    def sample(prompt: PairPrompt, seed: int) -> torch.Tensor:
        device = model.task_embedding.device
        refs = []
        for r in prompt.references:
            img = load_rgb(Path(r.image))
            pixels = reference_pixels(img, r.task, ref_size(img.shape[0], img.shape[1], r.task, ref_res))
            tokens, rgrid = encode_tokens(codec, pixels[None].to(device))
            refs.append(ReferenceTokens(tokens, rgrid, r.index, r.box))
        z = euler_sample(model, grid, refs, [prompt.caption], steps=steps, guidance=guidance, seed=seed,
                         true_cfg=true_cfg, negative_prompt=negative_prompt)
        return decode_tokens(codec, z, grid)[0].clamp(0, 1)

    return sample
