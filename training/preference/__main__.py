"""``python -m training.preference CONFIG.yaml [--key=value ...]`` (``command.py``)."""

from .command import main

raise SystemExit(main())
