"""The exported toy DreamO in the standalone generator: ``dreamo_core.generator.pipeline.DreamOGenerator`` on the
toy base (diffusers folder), the exported DreamO file merged by the generator's own loader
(``loading.apply_dreamo_files``: LoRA merged into the weights, tables and T5 rows read from the file), the toy
codec behind the diffusers ``AutoencoderKL`` interface the generator calls, and the tiny text encoder with the
file's placeholder rows. Nothing of the trainer's model object is used: only the two files.

``python -m training.toy.generate --prompt "a [ref#1] at top left on a gray background" --ref GLYPH.png
--box 0,0,0.5,0.5 --out out.png`` (defaults: the repo's ``models/toy``, its first run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dreamo_core.conditioning.placement import Box
from dreamo_core.generator.loading import LoraRequest, apply_dreamo_files
from dreamo_core.generator.pipeline import DreamOGenerator, GenerationSettings, ReferenceInput
from dreamo_core.generator.schedule import make_scheduler
from dreamo_core.spec import FLUX_DEV, DreamOSpec

from ..model import build_text_encoder
from .base import toy_model_config
from .codec import ToyVAE
from .constants import (
    GUIDANCE,
    LORA_RANK,
    MAIN_EXPORT,
    MAIN_TRAINABLE,
    REF_SIZE,
    SAMPLE_STEPS,
    TARGET_SIZE,
    TOY_DIR,
    TRUE_CFG,
)


class ToyPromptEncoder:
    """The tiny text encoder of the toy (``training.text.tiny_hashed.TinyTextEncoder``, seeded as the base) with the
    exported placeholder rows ``dreamo_t5_embedding``; ``encode(prompt)`` -> (embeds (1, T, 64), pooled (1, 64))."""

    def __init__(self, rows: torch.Tensor | None, seed: int = 0):
        cfg = toy_model_config(seed)
        self.encoder = build_text_encoder(cfg)
        self.rows = rows.float() if rows is not None else torch.zeros(FLUX_DEV.t5_placeholder_rows, cfg.joint_attention_dim)

    def encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, pooled, _ = self.encoder.encode([prompt], self.rows)
        return embeds, pooled


def load_toy_generator(base: str | Path = TOY_DIR / "base", dreamo: str | Path | None = MAIN_EXPORT,
                       strength: float = 1.0) -> DreamOGenerator:
    """The toy base + an exported DreamO file (None: the plain base) as a float32 CPU ``DreamOGenerator``."""
    from diffusers import FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(str(base), torch_dtype=torch.float32).eval()
    spec = DreamOSpec.of_diffusers_config(transformer.config)
    loras = [LoraRequest(Path(dreamo), strength)] if dreamo else []
    tables, rows = apply_dreamo_files(transformer, loras, None, spec) if loras else (None, None)
    return DreamOGenerator(transformer, ToyVAE(), ToyPromptEncoder(rows), make_scheduler(), tables, "cpu",
                           torch.float32)


def toy_train_config(base: str | Path, lora_rank: int = LORA_RANK):
    """The trainer's ModelConfig of a toy DreamO run on ``base`` (what ``python -m training.demo`` trains)."""
    from dataclasses import replace

    return replace(toy_model_config(), pretrained=str(base), tiny_text=True, codec="toy", lora_rank=lora_rank)


def load_trainer_model(base: str | Path = TOY_DIR / "base", trainable: str | Path = MAIN_TRAINABLE,
                       lora_rank: int = LORA_RANK):
    """The trainer's own ``DreamOTrainModel`` (peft LoRA, not merged) with a run's trainable tensors (the
    ``trainable.safetensors`` of its last checkpoint: LoRA A/B and the three tables, by parameter name)."""
    from safetensors.torch import load_file

    from ..model import build_model

    model = build_model(toy_train_config(base, lora_rank))
    state = load_file(str(trainable))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != names:
        raise ValueError(f"{trainable}: trainable tensors do not match the toy model "
                         f"(missing {sorted(names - set(state))[:3]}, unexpected {sorted(set(state) - names)[:3]})")
    model.load_state_dict(state, strict=False)
    return model.eval()


def toy_settings(seed: int, steps: int = SAMPLE_STEPS) -> GenerationSettings:
    """The generator settings the trainer's sampler reproduces: 128 px, the toy's guidance and true CFG, references
    at 64 px (the glyph's own size: 4 x 4 tokens)."""
    return GenerationSettings(width=TARGET_SIZE, height=TARGET_SIZE, steps=steps, guidance=GUIDANCE, seed=seed,
                              ref_res=REF_SIZE, true_cfg=TRUE_CFG, negative_prompt="", neg_guidance=GUIDANCE)


def main(argv: list[str] | None = None) -> int:
    from dreamo_core.generator.cli import load_image, save_png

    p = argparse.ArgumentParser(description="generate with the exported toy DreamO")
    p.add_argument("--prompt", default="a [ref#1] at top left on a gray background")
    p.add_argument("--ref", action="append", default=[], help="reference image (repeat for [ref#2])")
    p.add_argument("--box", action="append", default=[],
                   help="placement box X,Y,W,H (fractions) of the --ref in the same position (the placed runs)")
    p.add_argument("--base", default=str(TOY_DIR / "base"))
    p.add_argument("--dreamo", default=str(MAIN_EXPORT))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=SAMPLE_STEPS)
    p.add_argument("--out", default="toy.png")
    a = p.parse_args(argv)
    if len(a.box) > len(a.ref):
        p.error(f"{len(a.box)} --box for {len(a.ref)} --ref")
    gen = load_toy_generator(a.base, a.dreamo)
    boxes = [Box(*(float(v) for v in b.split(","))) for b in a.box] + [None] * (len(a.ref) - len(a.box))
    refs = [ReferenceInput(load_image(r, f"--ref {r}")[..., :3], "ip", k, box=box)
            for k, (r, box) in enumerate(zip(a.ref, boxes), start=1)]
    save_png(gen.generate(a.prompt, refs, toy_settings(a.seed, a.steps)), Path(a.out))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
