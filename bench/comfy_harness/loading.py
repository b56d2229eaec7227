"""ComfyUI imported on CPU with its built-in extra nodes, and this pack loaded the way ComfyUI loads custom nodes
(``nodes.load_custom_node``: the repository folder as a package, so its relative imports resolve); access to the
pack's modules and nodes as ComfyUI holds them. Nothing in ComfyUI is replaced."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import types
from pathlib import Path

from .stand_ins import COMFYUI_ABSENT, COMFYUI_UNUSED, stand_in_for_absent

REPO = Path(__file__).resolve().parents[2]
PACK_NAME = str(REPO).replace(".", "_x_")  # ComfyUI's sys.modules name of a custom-node folder


def setup_comfy(comfy_path: str, **cli_args: object) -> None:
    """Import ComfyUI (``comfy_path``, put first on sys.path), its built-in extra nodes, and our pack; on the CPU
    unless ``cpu=False``. ``cli_args``: ComfyUI command-line options set before ComfyUI picks its devices and
    attention, e.g. ``use_pytorch_cross_attention=True``. Libraries ComfyUI imports at start-up but our paths never
    call (``stand_ins.COMFYUI_ABSENT``, ``stand_ins.COMFYUI_UNUSED``) are stood in for where they are absent."""
    if comfy_path not in sys.path:
        sys.path.insert(0, comfy_path)  # ahead of the cwd that ``python -m pytest`` adds
    mod = sys.modules.get("nodes")
    if mod is not None and not str(getattr(mod, "__file__", "")).startswith(comfy_path):
        del sys.modules["nodes"]  # never our nodes/ package
    stand_in_for_absent((*COMFYUI_ABSENT, *COMFYUI_UNUSED))
    import comfy.cli_args

    for name, value in {"cpu": True, **cli_args}.items():
        setattr(comfy.cli_args.args, name, value)
    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    if not asyncio.run(nodes.load_custom_node(str(REPO))):
        raise RuntimeError("ComfyUI could not load the DreamO pack")


def pack(module: str) -> types.ModuleType:
    """A module of our pack as ComfyUI imported it, e.g. pack('nodes.runtime.wrapper')."""
    return importlib.import_module(f"{PACK_NAME}.{module}")  # imported by ComfyUI already, or now under it


def node(node_id: str) -> type:
    import nodes

    return nodes.NODE_CLASS_MAPPINGS[node_id]


def run_node(node_id: str, **inputs):
    """Execute a V3 node class directly; returns its outputs tuple."""
    return node(node_id).execute(**inputs).result


def run_core_node(node_id: str, **inputs):
    """Execute one of ComfyUI's own nodes, classic (``FUNCTION``) or V3 (``execute``) as the version has it;
    returns its outputs tuple."""
    cls = node(node_id)
    if hasattr(cls, "FUNCTION"):
        return tuple(getattr(cls(), cls.FUNCTION)(**inputs))
    return cls.execute(**inputs).result


def with_dreamo_tables(model, embedding_name: str = "embedding.safetensors"):
    """``model`` through Load DreamO LoRA with no LoRA, only the tables of ``embedding_name`` (in ``loras``)."""
    (out,) = run_node("DreamO_LoadLoRA", model=model, lora_name="None", strength=1.0, embedding_name=embedding_name)
    return out


def use_loras_folder(folder: Path) -> None:
    """Register ``folder`` as ComfyUI's default ``loras`` folder (its file list re-read on the next lookup)."""
    import folder_paths

    folder_paths.add_model_folder_path("loras", str(folder), is_default=True)
    folder_paths.filename_list_cache.clear()


def comfy_path() -> str | None:
    return os.environ.get("COMFYUI_PATH") or None


def comfyui_version() -> tuple[int, ...]:
    """The ComfyUI under test, e.g. (0, 33, 0) (its comfyui_version.py). Only tests use it, to say which
    workflows a version can run; the pack itself detects features."""
    import comfyui_version

    return tuple(int(part) for part in comfyui_version.__version__.split(".")[:3])
