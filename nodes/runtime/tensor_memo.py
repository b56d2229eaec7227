"""A small thread-safe memo for tensors that are pure functions of their key (tables on a device, a step's
embedding, ids): built once per (shape, device, dtype) and reused across steps and clones. Sharing it between
model clones is safe because a value never changes for its key; nothing is stored while torch.compile traces
(the traced graph then builds the value itself, so the graph does not depend on the memo's state)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch

T = TypeVar("T")


class TensorMemo:
    """Least-recently-used memo of at most ``size`` values."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.values: OrderedDict[Hashable, object] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        if torch.compiler.is_compiling():
            return build()
        with self.lock:
            if key in self.values:
                self.values.move_to_end(key)
                return self.values[key]  # type: ignore[return-value]
        value = build()
        with self.lock:
            self.values[key] = value
            while len(self.values) > self.size:
                self.values.popitem(last=False)
        return value
