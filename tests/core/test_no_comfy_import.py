"""dreamo_core must never import ComfyUI: checked at runtime in a fresh interpreter and statically."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import dreamo_core

PACKAGE_DIR = Path(dreamo_core.__file__).parent
REPO_ROOT = PACKAGE_DIR.parent


def core_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="dreamo_core.")]
    assert "dreamo_core.generator.flux_forward" in names and "dreamo_core.weights.formats" in names  # the walk found the package
    return names


def test_importing_every_module_pulls_in_no_comfy():
    modules = core_modules()
    code = (
        f"import sys, importlib\n"
        f"for name in ['dreamo_core', *{modules!r}]:\n"
        f"    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m == 'comfy' or m.startswith('comfy.') or m == 'comfy_api')\n"
        f"assert not bad, bad\n"
        f"print(len({modules!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(modules))


def comfy_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0].startswith("comfy")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0].startswith("comfy"):
                found.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__"
        ):
            found += [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("comfy")]
    return found


def test_the_static_check_sees_comfy_imports():
    # The checker itself must be able to fail.
    assert comfy_imports("import comfy.utils") == ["comfy.utils"]
    assert comfy_imports("from comfy.ldm.flux import model") == ["comfy.ldm.flux"]
    assert comfy_imports("def f():\n    import comfy\n") == ["comfy"]
    assert comfy_imports("importlib.import_module('comfy.sd')") == ["comfy.sd"]
    assert comfy_imports("import torch\nfrom .spec import FLUX_DEV") == []


def test_no_source_file_imports_comfy():
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(files) >= 10
    offenders = {str(f.relative_to(REPO_ROOT)): comfy_imports(f.read_text()) for f in files}
    assert {f: i for f, i in offenders.items() if i} == {}
