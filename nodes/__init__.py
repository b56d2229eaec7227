"""ComfyUI node layer of DreamO (V3 schema): the extension and its node list. One module per node here, the
display names in ``node_names``; what the nodes install and what runs while sampling is in ``runtime/``. Thin:
validation and wiring; the math lives in dreamo_core."""
# ruff: noqa: E402  (the ComfyUI version check must run before the node modules are imported)

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .runtime.comfy_support import require_supported_comfyui

require_supported_comfyui()  # before any node module: an older ComfyUI refuses the pack with a clear message

from .apply_conditioning import ApplyDreamOConditioning
from .encode_reference import EncodeDreamOReference
from .load_lora import LoadDreamOLoRA
from .reference_options import DreamOReferenceOptions
from .routing_preview import DreamORoutingPreview
from .routing_recorder import DreamORoutingRecorder
from .runtime.migration import register_replacements
from .text_encode import DreamOTextEncode

NODE_LIST: list[type[io.ComfyNode]] = [LoadDreamOLoRA, EncodeDreamOReference, DreamOReferenceOptions,
                                       ApplyDreamOConditioning, DreamOTextEncode, DreamORoutingRecorder,
                                       DreamORoutingPreview]


class DreamOExtension(ComfyExtension):
    async def on_load(self) -> None:
        await register_replacements()  # old DreamO graphs open migrated (ComfyUI >= 0.14; feature-detected)

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_LIST)
