"""Starts ComfyUI's own main.py for the browser test, with the test suite's torchvision/torchaudio stand-ins
(never installed here: they pull a CUDA torch). Usage: python serve_comfyui.py COMFYUI_PATH main.py-args..."""

import importlib.util
import os
import runpy
import sys
from pathlib import Path

comfy = os.path.abspath(sys.argv[1])
spec = importlib.util.spec_from_file_location("dreamo_nodes_harness",
                                              Path(__file__).resolve().parents[1] / "nodes" / "harness.py")
harness = importlib.util.module_from_spec(spec)
spec.loader.exec_module(harness)
harness.stub_torchvision_torchaudio()
sys.path.insert(0, comfy)
os.chdir(comfy)
sys.argv = [os.path.join(comfy, "main.py"), *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
