"""The toy DreamO's numbers, in one place: every toy module (world, codec, base, data, evaluation, generator, demo,
subject-tuning experiment) reads them from here.

Sizes: a scene is ``NATIVE`` x ``NATIVE`` native px and a reference ``REF_NATIVE`` px; files repeat each native
pixel ``UPSCALE`` x ``UPSCALE`` times, so a 16-px token holds 4 x 4 native px and the files are ``TARGET_SIZE`` /
``REF_SIZE`` px. Sampling: every toy path (evaluation, the generator, the toy workflow) samples ``SAMPLE_STEPS``
euler steps with true CFG ``TRUE_CFG`` (empty negative prompt) at the constant FLUX guidance ``GUIDANCE``.
"""

from __future__ import annotations

from pathlib import Path

from dreamo_core.spec import FLUX_DEV

NATIVE = 32  # scene side in native px
REF_NATIVE = 24  # reference side in native px (the subject centred on white)
UPSCALE = 4  # file px per native px (nearest-neighbour repetition)
TARGET_SIZE = NATIVE * UPSCALE  # 128: a scene file's side (the trainer's one bucket)
REF_SIZE = REF_NATIVE * UPSCALE  # 96: a reference file's side (the trainer's data.ref_res, the workflow's resolution)
TOKEN_GRID = (TARGET_SIZE // FLUX_DEV.token_pixels,) * 2  # (8, 8): target tokens of a scene file

GUIDANCE = 3.5  # the toy base is conditioned on a constant FLUX guidance (FLUX.1-dev is guidance-distilled)
TRUE_CFG = 3.0  # true CFG scale of every toy sampling path (negative prompt "": no references, no subject)
SAMPLE_STEPS = 10  # euler steps of the evaluation (the toy workflow pins the same)
LORA_RANK = 32  # the toy DreamO LoRA (hidden 128)

ANONYMOUS_P = 0.1  # base captions naming the subjects "object" (the text-only baseline's prompt)
EMPTY_P = 0.1  # base captions dropped to "" (the unconditional of true CFG)

TOY_DIR = Path(__file__).resolve().parents[2] / "models" / "toy"  # the repo's trained toy (python -m training.demo)
