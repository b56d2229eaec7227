"""``python -m training.tune_subject IMAGE ...``: DreamTuner-style subject tuning (``training.subject.tune``)."""

from __future__ import annotations

from .subject.tune import main

if __name__ == "__main__":
    raise SystemExit(main())
