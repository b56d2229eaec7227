"""What the Comfy Registry ships (tools/registry_archive.py, comfy-cli's rule: git-tracked minus .comfyignore):
exactly what an artist's install needs, and enough of it that the pack's code imports from the archive alone."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.registry_archive import REPO, registry_files, write_zip

SHIPPED_TOP = {"__init__.py", "nodes", "dreamo_core", "web", "locales", "workflows", "README.md", "LICENSE",
               "pyproject.toml", "requirements.txt"}


@pytest.fixture(scope="module")
def files() -> list[str]:
    return registry_files()


def test_ships_the_pack_and_nothing_of_the_developers(files):
    top = {f.split("/")[0] for f in files}
    assert top == SHIPPED_TOP, f"unexpected top-level entries: {sorted(top ^ SHIPPED_TOP)}"
    tracked = set(subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True,
                                 check=True).stdout.split())
    for folder in ("tests/", "bench/", "tools/", "training/", "models/", "docs/"):
        assert any(f.startswith(folder) for f in tracked), f"{folder} should exist in the repo (test premise)"
        assert not any(f.startswith(folder) for f in files), f"{folder} must not ship to the Registry"
    assert not [f for f in files if f.endswith((".safetensors", ".ckpt", ".pt"))]
    # every workflow template ships with its thumbnail
    templates = [f for f in files if f.startswith("workflows/") and f.endswith(".json")]
    assert templates and all(f[:-5] + ".jpg" in files for f in templates)


def relative_imports(path: Path) -> list[tuple[int, str | None]]:
    """(level, module) of every relative import in a Python file."""
    tree = ast.parse(path.read_text())
    return [(n.level, n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]


def test_every_relative_import_of_the_pack_resolves_inside_the_archive(files):
    shipped = set(files)
    for f in (f for f in files if f.endswith(".py")):
        here = Path(f).parent
        for level, module in relative_imports(REPO / f):
            base = here
            for _ in range(level - 1):
                base = base.parent
            target = base / (module or "").replace(".", "/")
            assert (f"{target.as_posix()}.py" in shipped or f"{target.as_posix()}/__init__.py" in shipped
                    or (module is None and f"{base.as_posix()}/__init__.py" in shipped)), \
                f"{f} imports {'.' * level}{module or ''}, which the archive lacks"


def test_dreamo_core_imports_from_the_archive_alone(files, tmp_path):
    """Unpack the archive and import every dreamo_core module from it in a fresh interpreter that cannot see the
    repository (the nodes need ComfyUI; the node tests load the pack itself)."""
    archive = tmp_path / "pack.zip"
    write_zip(files, archive)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "pack")
    modules = sorted(".".join(Path(f[:-3]).parts).removesuffix(".__init__") for f in files
                     if f.startswith("dreamo_core/") and f.endswith(".py"))
    code = ("import importlib, sys\n"
            f"sys.path = [{str(tmp_path / 'pack')!r}] + [p for p in sys.path if p and {str(REPO)!r} not in p]\n"
            f"for m in {modules!r}:\n"
            "    mod = importlib.import_module(m)\n"
            f"    assert mod.__file__.startswith({str(tmp_path / 'pack')!r}), mod.__file__\n"
            "print(len(sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
