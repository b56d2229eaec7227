"""ComfyUI's ``transformer_options`` conventions as DreamO uses them: the sigma of a call, adding our one-shot
``post_input`` patch to a copy, and refusing what cannot compose."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..node_names import APPLY_CONDITIONING

WHERE = APPLY_CONDITIONING


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


def check_no_foreign_references(ref_latents: Sequence[torch.Tensor] | None, items: Sequence[object | None]) -> None:
    """ValueError when reference latents reach batch items without a DreamO layout (``items``: each item's
    layout, None = none): on a DreamO model they would run with the DreamO LoRA but without DreamO's embedding,
    and the official negative pass has no references at all. (A batch shares one ``ref_latents``: ComfyUI batches
    conds only with references of the same shapes.)"""
    if ref_latents and not all(i is not None for i in items):
        raise ValueError(
            f"{WHERE}: a prompt reaching the sampler carries {len(ref_latents)} reference latent(s) but no DreamO "
            "layout (reference latents from another node, e.g. ComfyUI's ReferenceLatent, often on the NEGATIVE "
            "prompt); on a DreamO model they would run without DreamO's embedding. Connect a plain negative prompt "
            "to the sampler's negative input, and give references to DreamO only through DreamO Encode Reference -> "
            "Apply DreamO Conditioning")


def with_post_input(transformer_options: dict, patch: Callable) -> dict:
    """A copy of transformer_options whose ``patches["post_input"]`` list starts with ``patch``."""
    patches = dict(transformer_options.get("patches", {}))
    patches["post_input"] = [patch, *patches.get("post_input", [])]
    return {**transformer_options, "patches": patches}
