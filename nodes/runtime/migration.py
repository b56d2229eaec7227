"""Graphs from the older DreamO port open migrated onto these nodes (ComfyUI >= 0.14 node replacements).

The port is ToTheBeginning/ComfyUI-DreamO (nodes ``DreamOProcessorLoader``, ``DreamORefEncode``, ``ApplyDreamO``).
Its definitions as we read them (a copy of its ``nodes.py``; the repository itself was not available to us):

- ``DreamORefEncode``: inputs ``pixels`` (IMAGE), ``vae`` (VAE), ``dreamo_processor`` (DREAMO_PROCESSOR),
  widgets ``resolution`` (INT 512..1024, step 16) then ``ref_task`` (ip / id / style); outputs LATENT, IMAGE.
  It removed the background itself (BEN2) for ip and aligned the face (facexlib) for id.
- ``ApplyDreamO``: ``model``, ``ref1`` and optional ``ref2``, ``ref3`` (LATENT) -> MODEL; it read
  ``embedding.safetensors`` itself and took no conditioning.
- ``DreamOProcessorLoader``: no inputs -> DREAMO_PROCESSOR (BEN2 + facexlib).

Only ``DreamORefEncode`` has a faithful counterpart: DreamO Encode Reference, the same image, VAE, task and
resolution (index 1, no mask: connect a mask, e.g. core Remove Background, where the old node removed the
background, and give a second reference index 2). ``ApplyDreamO`` is *not* mapped: its ref2/ref3 slots have
no place on Apply DreamO Conditioning (references chain instead), so a migrated two-reference graph would
silently run with one; it also takes no positive conditioning. ``DreamOProcessorLoader`` has no counterpart.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("DreamO")

REPLACEMENTS = [
    {"new_node_id": "DreamO_EncodeReference", "old_node_id": "DreamORefEncode",
     "old_widget_ids": ["resolution", "ref_task"],
     "input_mapping": [{"new_id": "image", "old_id": "pixels"}, {"new_id": "vae", "old_id": "vae"},
                       {"new_id": "resolution", "old_id": "resolution"}, {"new_id": "task", "old_id": "ref_task"},
                       {"new_id": "index", "set_value": 1}, {"new_id": "invert_mask", "set_value": False}],
     "output_mapping": [{"new_idx": 0, "old_idx": 0}]},
]


def replacement_api():
    """``ComfyAPI().node_replacement`` where this ComfyUI has node replacements (``io.NodeReplace``, 0.14+) and
    a running server to hold them; None otherwise (0.3.64, or ComfyUI imported without its server, as in tests)."""
    from comfy_api.latest import ComfyAPI, io

    api = ComfyAPI()
    if not hasattr(io, "NodeReplace") or not hasattr(api, "node_replacement"):
        return None
    server = sys.modules.get("server")  # ComfyUI's server module: registrations live on its PromptServer
    if getattr(getattr(server, "PromptServer", None), "instance", None) is None:
        return None
    return api.node_replacement


async def register_replacements() -> int:
    """Registers REPLACEMENTS where supported; returns how many were registered."""
    api = replacement_api()
    if api is None:
        log.debug("DreamO: this ComfyUI has no node replacements; old DreamO graphs are not migrated")
        return 0
    from comfy_api.latest import io

    for entry in REPLACEMENTS:
        await api.register(io.NodeReplace(**entry))
    return len(REPLACEMENTS)
