"""Node tests run against a real ComfyUI checkout (COMFYUI_PATH), set up once here with the shared harness
(``bench.comfy_harness``); without it every module here is skipped (a failure with ``--no-skips``). The fixtures the
node tests share are here; their helpers come from the harness."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import comfy_harness as h

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
NO_COMFYUI = "COMFYUI_PATH is not set: node tests need a ComfyUI checkout"
HERE = Path(__file__).parent

if COMFYUI_PATH:
    h.setup_comfy(COMFYUI_PATH)


class ModuleWithoutComfyUI(pytest.Module):
    """A node test module collected without ComfyUI: skipped whole, never imported (its names could clash with
    other test modules' and its helpers need ComfyUI)."""

    def collect(self):
        pytest.skip(NO_COMFYUI)


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    return None if COMFYUI_PATH else ModuleWithoutComfyUI.from_parent(parent, path=module_path)


@pytest.fixture(scope="session")
def loras_dir(tmp_path_factory):
    """A ComfyUI ``loras`` folder with the harness's synthetic DreamO files (``h.write_loras``)."""
    folder = tmp_path_factory.mktemp("loras")
    h.write_loras(folder)
    return folder


@pytest.fixture
def dreamo_model(loras_dir):
    """``make(seed=0, dtype=..., compute=...) -> (base, model)``: a tiny FLUX (``h.tiny_flux``) and the same
    through Load DreamO LoRA with only ``embedding.safetensors`` (the harness's tables)."""
    def make(seed: int = 0, **kw):
        base = h.tiny_flux(seed, **kw)
        return base, h.with_dreamo_tables(base)
    return make
