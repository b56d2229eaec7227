"""The ``transformer_options`` of one DreamO model call made by hand, as ComfyUI builds them inside a sampling run:
for tests that call the DIFFUSION_MODEL wrapper with a stand-in executor (what reaches Flux ``_forward``)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from .loading import pack


def dreamo_call_options(model, prompts: list[list | None], sigma: float | None = None, **extra) -> dict:
    """Options of a call whose batch holds one item per entry of ``prompts`` (a CONDITIONING, e.g. Apply's positive,
    or None for an item without one: a negative prompt), sampled by ``model`` (a DreamO ModelPatcher): the run
    ``sampling_run`` resolves for these conds, the uuids ComfyUI lists, the per-item layouts the APPLY_MODEL
    wrapper adds, ``cond_or_uncond`` as CFGGuider numbers them (0 = a prompt with a layout) and ``sigmas``."""
    import comfy.sampler_helpers

    S = pack("nodes.runtime.sampling_run")
    conds = [comfy.sampler_helpers.convert_cond(p)[0] if p is not None else {"uuid": object()} for p in prompts]
    run = S.sampling_run(SimpleNamespace(model_patcher=model, conds={"positive": [c for c in conds if "cross_attn" in c]}))
    uuids = [c["uuid"] for c in conds]
    options = {"uuids": uuids, "cond_or_uncond": [0 if p is not None else 1 for p in prompts], **extra}
    if run is not None:
        options.update({S.RUN_KEY: run, S.ITEMS_KEY: run.item_layouts(uuids, len(prompts))})
    if sigma is not None:
        options["sigmas"] = torch.tensor([sigma])
    return options
