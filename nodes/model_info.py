"""What the node layer needs to know about a ComfyUI model: is it Flux, and its DreamO-relevant sizes."""

from __future__ import annotations

from typing import Any

import comfy.ldm.flux.model
import comfy.model_base

from ..dreamo_core.embeddings import ConditionEmbeddings
from ..dreamo_core.spec import DreamOSpec

EMBEDDINGS_ATTACHMENT = "dreamo_embeddings"
T5_ROWS_ATTACHMENT = "dreamo_t5_rows"
WRAPPER_KEY = "dreamo"


def flux_params(model: Any, where: str) -> Any:
    """The FluxParams of a ModelPatcher holding a FLUX model; ValueError naming ``where`` otherwise."""
    base = getattr(model, "model", None)
    dm = getattr(base, "diffusion_model", None)
    if not isinstance(base, comfy.model_base.Flux) or not isinstance(dm, comfy.ldm.flux.model.Flux):
        kind = type(base).__name__ if base is not None else type(model).__name__
        raise ValueError(f"{where}: DreamO needs a FLUX.1 model (e.g. flux1-dev), got a {kind} model")
    return dm.params


def spec_for_model(model: Any, where: str) -> DreamOSpec:
    """DreamOSpec with the model's width, MLP ratio and block counts (FLUX.1-dev: 3072, 4.0, 19, 38)."""
    p = flux_params(model, where)
    return DreamOSpec(hidden_size=p.hidden_size, mlp_ratio=p.mlp_ratio,
                      num_double_blocks=p.depth, num_single_blocks=p.depth_single_blocks)


def attached_embeddings(model: Any) -> ConditionEmbeddings | None:
    """The DreamO tables Load DreamO LoRA attached to this ModelPatcher, or None."""
    return model.get_attachment(EMBEDDINGS_ATTACHMENT)
