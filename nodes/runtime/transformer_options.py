"""ComfyUI's ``transformer_options`` conventions as DreamO uses them: which batch items are the positive
prompt, the sigma of a call, adding our one-shot ``post_input`` patch to a copy, and refusing what cannot compose."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..node_names import APPLY_CONDITIONING

WHERE = APPLY_CONDITIONING
COND = 0  # ComfyUI's cond_or_uncond marker for the positive prompt (1 = negative)
RUN_KEY = "dreamo_routing_run"  # transformer_options key of a recording run (runtime/routing_record.py)


def cond_items(cond_or_uncond: Sequence[int] | None, batch: int) -> tuple[bool, ...]:
    """(batch,) Python bools, True for positive-prompt items. Each entry of ``cond_or_uncond`` covers one chunk of
    ``batch // len(cond_or_uncond)`` consecutive items; ``None`` or empty means every item is positive. Decided
    from Python facts only (no tensor, no sync: no graph break under torch.compile)."""
    if not cond_or_uncond:
        return (True,) * batch
    chunks = len(cond_or_uncond)
    if batch % chunks:
        raise ValueError(f"DreamO: batch of {batch} items cannot be split into {chunks} cond/uncond chunks")
    return tuple(c == COND for c in cond_or_uncond for _ in range(batch // chunks))


def current_sigma(transformer_options: dict) -> float | None:
    """The sigma of this model call (ComfyUI puts the (B,) sigmas into transformer_options), or None."""
    sigmas = transformer_options.get("sigmas")
    if sigmas is None:
        return None
    return float(sigmas.reshape(-1)[0].item()) if isinstance(sigmas, torch.Tensor) else float(sigmas)


def patch_name(patch: Any) -> str:
    """``module.qualname`` of a patch function or object, for messages."""
    target = patch if hasattr(patch, "__qualname__") else type(patch)
    return f"{getattr(target, '__module__', '?')}.{target.__qualname__}"


def check_no_foreign_patches(transformer_options: dict) -> None:
    """ValueError unless DreamO's tokens and ids reach the blocks as DreamO sets them: no other ``post_input``
    patch (core's Flux KV Cache drops reference tokens, USO Style Reference lengthens the text, each would make
    our embedding or strength bias land on the wrong tokens) and no ``rope_options`` (ScaleROPE: DreamO replaces
    the image ids with its own, so a RoPE scale or shift would be silently lost)."""
    others = transformer_options.get("patches", {}).get("post_input", [])
    if others:
        raise ValueError(
            f"{WHERE}: another node added a post_input patch to this model ({', '.join(patch_name(p) for p in others)}); "
            "DreamO changes the image tokens there and cannot be combined with it (e.g. Flux KV Cache drops the "
            "reference tokens, Apply USO Style Reference adds text tokens). Remove that node, or apply it to a model "
            "without DreamO")
    if transformer_options.get("rope_options"):
        raise ValueError(
            f"{WHERE}: the model has RoPE options {transformer_options['rope_options']} (ScaleROPE or a model that "
            "sets them); DreamO sets its own position ids for the image and reference tokens, so they would be "
            "ignored. Remove ScaleROPE from this model")


def check_no_negative_references(ref_latents: Sequence[torch.Tensor] | None, items: Sequence[bool]) -> None:
    """ValueError when reference latents reach negative-prompt items (``cond_items``, False = negative): the
    official negative pass has no references, and DreamO adds no embedding there, so the result cannot be right.
    (A batch mixing both passes shares one ``ref_latents``: ComfyUI batches conds only with the same keys.)"""
    if ref_latents and not all(items):
        raise ValueError(
            f"{WHERE}: the NEGATIVE prompt reaching the sampler carries {len(ref_latents)} reference latent(s) "
            "(e.g. the CONDITIONING output of Apply DreamO Conditioning also reached the negative input); DreamO's "
            "negative pass runs without references and embeddings. Connect the plain negative prompt to the "
            "sampler's negative input (or use cfg 1)")


def with_post_input(transformer_options: dict, patch: Callable) -> dict:
    """A copy of transformer_options whose ``patches["post_input"]`` list starts with ``patch``."""
    patches = dict(transformer_options.get("patches", {}))
    patches["post_input"] = [patch, *patches.get("post_input", [])]
    return {**transformer_options, "patches": patches}
