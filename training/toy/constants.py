"""The toy DreamO's numbers, in one place: every toy module (world, codec, base, data, evaluation, generator, demo,
retraining, subject-tuning experiment) and the toy workflow read them from here.

Sizes: a scene is ``NATIVE`` x ``NATIVE`` native px; a glyph is ``GLYPH_CELLS`` x ``GLYPH_CELLS`` cells of ``CELL``
native px each; files repeat each native pixel ``UPSCALE`` x ``UPSCALE`` times, so one 16-px token holds exactly
one glyph cell (4 x 4 native px), a scene file is ``TARGET_SIZE`` px (8 x 8 tokens) and a reference file, the glyph
alone, ``REF_SIZE`` px (4 x 4 tokens). A glyph sits at one of 3 x 3 places, ``PLACE_STEP`` cells apart. Sampling:
every toy path (evaluation, the generator, the toy workflow) runs ``SAMPLE_STEPS`` euler steps with true CFG
``TRUE_CFG`` (empty negative prompt) at the constant FLUX guidance ``GUIDANCE``.
"""

from __future__ import annotations

from pathlib import Path

from dreamo_core.spec import FLUX_DEV

NATIVE = 32  # scene side in native px
UPSCALE = 4  # file px per native px (nearest-neighbour repetition)
CELL = 4  # native px per glyph cell: one cell = one 16-px token of a file
GLYPH_CELLS = 4  # a glyph is 4 x 4 cells
GLYPH_NATIVE = CELL * GLYPH_CELLS  # 16 native px
TARGET_SIZE = NATIVE * UPSCALE  # 128: a scene file's side (the trainer's one bucket)
REF_SIZE = GLYPH_NATIVE * UPSCALE  # 64: a reference file's side (the trainer's data.ref_res, the workflow's resolution)
TOKEN_GRID = (TARGET_SIZE // FLUX_DEV.token_pixels,) * 2  # (8, 8): target tokens of a scene file
PLACE_STEP = 2  # cells between neighbouring places: a glyph's top-left cell is at 0, 2 or 4 per axis

GUIDANCE = 3.5  # the toy base is conditioned on a constant FLUX guidance (FLUX.1-dev is guidance-distilled)
TRUE_CFG = 3.0  # true CFG scale of every toy sampling path (negative prompt "": no references, no subject)
SAMPLE_STEPS = 10  # euler steps of the evaluation (the toy workflow pins the same)
EMPTY_P = 0.1  # base captions dropped to "" (the unconditional of true CFG)

HELD_OUT_GLYPHS = 10  # fresh glyphs never shown in training: the evaluation's identities and retrieval gallery
HELD_OUT_SEED = 20261206  # draws them (training glyphs are drawn from other seeds and never equal one of them)

LORA_RANK = 32  # the toy DreamO LoRA (hidden 128)
BASE_STEPS = 1000  # toy base training steps (batch 16): draws crisp glyphs at the prompt's place (training/README)
DREAMO_STEPS = 1600  # toy DreamO training steps per placed run (batch 8; diagonal runs: half)
ROUTE_WEIGHT = 0.1  # λ_route of the runs with L_route (0 in the runs without)

TOY_DIR = Path(__file__).resolve().parents[2] / "models" / "toy"  # the repo's trained toy (python -m training.toy.retrain)
MAIN_EXPORT = TOY_DIR / "runs" / "placed_route_s0.safetensors"  # the toy's DreamO file the generator and workflow use
MAIN_TRAINABLE = TOY_DIR / "runs" / "placed_route_s0.trainable.safetensors"  # the same run's trainer tensors (peft)
