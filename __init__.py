"""DreamO for ComfyUI. ComfyUI loads this pack through ``comfy_entrypoint`` (V3 nodes only).

Importable without ComfyUI and outside a package (e.g. by test collectors): then no entry point is defined.
"""

import importlib.util

WEB_DIRECTORY = "./web"  # per-node help pages: web/docs/<NodeId>.md (+ <NodeId>/<locale>.md); locales/ is read by ComfyUI

if __package__ and importlib.util.find_spec("comfy_api") is not None:
    from .nodes import DreamOExtension

    async def comfy_entrypoint() -> DreamOExtension:
        """ComfyUI V3 entry point: the DreamO node list."""
        return DreamOExtension()
