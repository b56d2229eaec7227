"""Stand-ins for libraries that are not installed here but are imported on paths we never run: ``torchvision`` and
``torchaudio``, which ComfyUI imports at start-up (their wheels pull a CUDA torch, so they are never installed;
comfy_integration.md §10, ../shared/comfyui/README.md), ``COMFYUI_UNUSED`` (absent on the GPU machine), and
``torchvision.utils`` / ``cv2``, which the official
DreamO's ``dreamo/utils.py`` imports (a denoising step uses neither). A stand-in has every submodule and every
attribute; calling anything from it raises."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterable

COMFYUI_ABSENT = ("torchvision", "torchaudio")  # what ComfyUI 0.3.64 / 0.33 import but this machine never installs
# what ComfyUI 0.33 imports at start-up and FLUX sampling through our nodes never calls (sdpose's gaussian_filter,
# the SDE samplers' Brownian tree, video input); stood in for only where absent, i.e. on the GPU machine of
# bench/gpu_suite.sh, which gets no wheels of them (scipy's and av's are 35 MB and more, over its 64 MiB cap)
COMFYUI_UNUSED = ("scipy", "torchsde", "av")
# transformers / diffusers decide once, at import, whether torchvision exists: they are imported before any
# stand-in, so they see the truth and never use torchvision features because of one
PROBED_FIRST = ("transformers.utils.import_utils", "diffusers.utils.import_utils")


class MissingLibrary:
    """Stands in for any name imported from an absent library; fails loudly if anything actually uses it."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self.name} is a stand-in: {self.name.split('.')[0]} is not installed")

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return MissingLibrary(f"{self.name}.{attr}")


class StandInModule(types.ModuleType):
    """A stand-in package: every submodule exists and every attribute is a MissingLibrary."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return MissingLibrary(f"{self.__name__}.{attr}")


class StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds every module of the top-level ``libraries`` (e.g. ``torchvision.ops``,
    ``torchvision.transforms.functional``, ``torchaudio.functional``) as a StandInModule. It sits last on
    ``sys.meta_path``: a real install always wins."""

    def __init__(self) -> None:
        self.libraries: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in self.libraries:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def stand_in_for_absent(libraries: Iterable[str] = COMFYUI_ABSENT) -> StandInFinder:
    """Make each top-level library of ``libraries`` that is not installed importable as a stand-in (installed ones
    are left alone). Returns the one finder of this process (its ``libraries`` are the stand-ins)."""
    for probe in PROBED_FIRST:
        try:
            importlib.import_module(probe)
        except ImportError:
            pass
    finder = next((f for f in sys.meta_path if isinstance(f, StandInFinder)), None)
    if finder is None:
        finder = StandInFinder()
        sys.meta_path.append(finder)  # last: a real install would always win
    finder.libraries.update(name for name in libraries
                            if name not in finder.libraries and importlib.util.find_spec(name) is None)
    return finder
