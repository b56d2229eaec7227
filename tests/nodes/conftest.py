"""Node tests run against a real ComfyUI checkout (COMFYUI_PATH); without it every module here is skipped."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HARNESS = "dreamo_nodes_harness"
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")


def _load_harness() -> None:
    spec = importlib.util.spec_from_file_location(HARNESS, Path(__file__).with_name("harness.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[HARNESS] = module
    spec.loader.exec_module(module)
    module.setup_comfy(COMFYUI_PATH)


if COMFYUI_PATH and HARNESS not in sys.modules:
    _load_harness()


@pytest.fixture(scope="session")
def loras_dir(tmp_path_factory):
    h = sys.modules[HARNESS]
    folder = tmp_path_factory.mktemp("loras")
    h.write_loras(folder)
    return folder
