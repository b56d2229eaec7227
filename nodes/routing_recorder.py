"""Routing-map recording during sampling: an ``optimized_attention_override`` (installed per call in a copy of
transformer_options) that computes each reference's response map from q/k and then runs the attention unchanged.
The map is dreamo_core.routing.reference_response, the trainer's L_route quantity."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..dreamo_core.routing import reference_response


class RoutingRecorder:
    """Accumulates (n_refs, target_tokens) response maps of the positive item 0 over chosen blocks and a sigma range.

    blocks: attention-call indices within one forward (double blocks 0..depth-1, then single blocks), None = all."""

    def __init__(self, blocks: Sequence[int] | None, sigma_start: float, sigma_end: float, mode: str = "softmax"):
        self.blocks = None if blocks is None else set(blocks)
        self.sigma_start, self.sigma_end, self.mode = sigma_start, sigma_end, mode
        self.total: torch.Tensor | None = None
        self.count = 0
        self.target: tuple[int, int] | None = None
        self.run_key: int | None = None

    def to(self, device_or_dtype: Any) -> RoutingRecorder:
        return self

    def reset_if_new_run(self, transformer_options: dict) -> None:
        """Forget maps of an earlier sampling run (a new ``sample_sigmas`` tensor means a new run)."""
        key = id(transformer_options.get("sample_sigmas"))
        if key != self.run_key:
            self.run_key, self.total, self.count = key, None, 0

    def active(self, sigma: float | None) -> bool:
        return sigma is None or self.sigma_end <= sigma <= self.sigma_start

    def override(self, text_tokens: int, target: tuple[int, int], ref_tokens: Sequence[int],
                 previous: Callable | None) -> Callable:
        """A fresh per-forward attention override; its call counter gives the block index."""
        n_target = target[0] * target[1]
        image = slice(text_tokens, text_tokens + n_target)
        refs, start = [], text_tokens + n_target
        for n in ref_tokens:
            refs.append(slice(start, start + n))
            start += n
        calls = [0]

        def attention_override(func: Callable, q: torch.Tensor, k: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            block = calls[0]
            calls[0] += 1
            if (self.blocks is None or block in self.blocks) and q.ndim == 4 and q.shape[2] == start:
                with torch.no_grad():
                    maps = reference_response(q[:1], k[:1], refs, image, self.mode)[0]  # (n_refs, n_target)
                self.total = maps.float().cpu() if self.total is None else self.total + maps.float().cpu()
                self.count += 1
                self.target = target
            if previous is not None:
                return previous(func, q, k, *args, **kwargs)
            return func(q, k, *args, **kwargs)

        return attention_override

    def maps(self) -> torch.Tensor:
        """(n_refs, rows, cols) mean response maps; ValueError if nothing was recorded."""
        if self.total is None or self.target is None:
            raise ValueError("DreamO Routing Preview: no routing maps were recorded; run a sampler with the model "
                             "from DreamO Routing Recorder (and references applied) before this node")
        return (self.total / self.count).reshape(-1, *self.target)
