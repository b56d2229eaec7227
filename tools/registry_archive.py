"""What an artist's install from the Comfy Registry holds: ``python tools/registry_archive.py [--zip OUT.zip]``.

comfy-cli (``comfy node pack`` / ``comfy node publish``) archives the git-tracked files minus those matching
``.comfyignore`` (gitignore patterns), plus ``[tool.comfy] includes``. This lists the same set with git's own
matcher, so it needs no comfy-cli: the nodes, ``dreamo_core``, ``web/``, ``locales/``, the workflow templates and
the package metadata; no tests, benches, tools, trainer, toy weights or docs. A git clone (ComfyUI-Manager's
install) carries the whole repository instead.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def git_files(repo: Path, *extra: str) -> list[str]:
    """``git ls-files`` of ``repo`` with ``extra`` options (paths relative to the repo, ``/`` separated)."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", *extra], check=True, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def registry_files(repo: Path = REPO) -> list[str]:
    """Sorted paths the Registry archive holds: tracked files not matched by ``.comfyignore``, plus ``includes``."""
    tracked = git_files(repo)
    ignore = repo / ".comfyignore"
    ignored = set(git_files(repo, "-c", "-i", f"--exclude-from={ignore}")) if ignore.is_file() else set()
    includes = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["comfy"].get("includes", [])
    extra = [str(p.relative_to(repo)) for inc in includes for p in sorted((repo / inc).rglob("*")) if p.is_file()]
    return sorted({f for f in tracked if f not in ignored} | set(extra))


def write_zip(files: list[str], out: Path, repo: Path = REPO) -> None:
    """The archive comfy-cli would upload (same member names)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(repo / f, f)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zip", type=Path, help="also write the archive here")
    args = p.parse_args(argv)
    files = registry_files()
    size = sum((REPO / f).stat().st_size for f in files)
    print("\n".join(files))
    print(f"{len(files)} files, {size / 1e6:.2f} MB", file=sys.stderr)
    if args.zip:
        write_zip(files, args.zip)
        print(f"wrote {args.zip}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
