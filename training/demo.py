"""``python -m training.demo``: the toy DreamO end to end on a CPU (``training.toy.demo``)."""

from __future__ import annotations

from .toy.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
