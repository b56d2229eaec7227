"""The routing record behind DreamO Routing Recorder / Preview: response maps recorded during sampling, with no
state shared between runs.

A ``SAMPLER_SAMPLE`` wrapper starts a fresh ``RoutingRun`` for every sampling run and passes it down in that run's
own copy of ``model_options["transformer_options"]``; the DreamO wrapper then installs, per model call, an
``optimized_attention_override`` that adds each reference's response map (dreamo_core.routing.response_maps, the trainer's
L_route quantity) to that run and runs the attention unchanged. The recorder keeps only the last finished run,
so clones sampled alternately (or on several GPUs at once) never mix their maps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from comfy_api.latest import io

from ...dreamo_core.conditioning.token_layout import reference_spans
from ...dreamo_core.routing.response_maps import joint_attention_responses
from ..node_names import ROUTING_PREVIEW, ROUTING_RECORDER
from .flux_arguments import method_argument_position
from .transformer_options import RUN_KEY

RECORDER = ROUTING_RECORDER
RoutingType = io.Custom("DREAMO_ROUTING")  # the value: a RoutingRecorder (Recorder's output, Preview's input)


class RoutingRun:
    """Summed (n_refs, target_tokens) maps of one sampling run (locked: multi-GPU conds run in threads)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0
        self.target: tuple[int, int] | None = None
        self.lock = threading.Lock()

    def add(self, maps: torch.Tensor, target: tuple[int, int]) -> None:
        maps = maps.float().cpu()
        with self.lock:
            self.total = maps if self.total is None else self.total + maps
            self.count += 1
            self.target = target


class RoutingRecorder:
    """Which blocks and sigmas to record, and the last finished run.

    blocks: attention-call indices within one forward (double blocks 0..depth-1, then single blocks), None = all."""

    def __init__(self, blocks: Sequence[int] | None, sigma_start: float, sigma_end: float, mode: str = "softmax"):
        self.blocks = None if blocks is None else frozenset(blocks)
        self.sigma_start, self.sigma_end, self.mode = sigma_start, sigma_end, mode
        self.latest: RoutingRun | None = None

    def to(self, device_or_dtype: Any) -> RoutingRecorder:
        return self

    def active(self, sigma: float | None) -> bool:
        return sigma is None or self.sigma_end <= sigma <= self.sigma_start

    def run_wrapper(self, executor: Any, *args: Any, **kwargs: Any) -> Any:
        """``SAMPLER_SAMPLE`` wrapper: sample with a fresh RoutingRun in this run's transformer_options, then make
        it the latest. ``extra_args`` is found by name in the sampler's ``sample`` signature."""
        run = RoutingRun()
        sample = getattr(type(getattr(executor, "class_obj", None)), "sample", None)
        if "extra_args" in kwargs:
            kwargs = {**kwargs, "extra_args": with_run(kwargs["extra_args"], run)}
        else:
            pos = method_argument_position(sample, "extra_args", RECORDER)
            if pos >= len(args):
                raise RuntimeError(f"{RECORDER}: the sampler was called without extra_args; cannot record")
            args = args[:pos] + (with_run(args[pos], run),) + args[pos + 1 :]
        out = executor(*args, **kwargs)
        self.latest = run  # one assignment: a reader sees the previous or this finished run
        return out

    def override(self, run: RoutingRun, text_tokens: int, target: tuple[int, int], ref_tokens: Sequence[int],
                 previous: Callable | None) -> Callable:
        """A fresh per-forward attention override recording into ``run``; its call counter gives the block index."""
        n_target = target[0] * target[1]
        image = slice(text_tokens, text_tokens + n_target)
        spans = reference_spans(text_tokens + n_target, ref_tokens)
        refs, start = [slice(s, e) for s, e in spans], text_tokens + n_target + sum(ref_tokens)
        calls = [0]

        def attention_override(func: Callable, q: torch.Tensor, k: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            block = calls[0]
            calls[0] += 1
            if refs and (self.blocks is None or block in self.blocks) and q.ndim == 4 and q.shape[2] == start:
                with torch.no_grad():
                    run.add(joint_attention_responses(q[:1], k[:1], refs, image, self.mode)[0], target)  # (n_refs, n_target)
            if previous is not None:
                return previous(func, q, k, *args, **kwargs)
            return func(q, k, *args, **kwargs)

        return attention_override

    def maps(self) -> torch.Tensor:
        """(n_refs, rows, cols) mean response maps of the last finished run; ValueError if nothing was recorded."""
        run = self.latest
        if run is None or run.total is None or run.target is None:
            raise ValueError(f"{ROUTING_PREVIEW}: no routing maps were recorded; run a sampler with the model "
                             f"from {RECORDER} (and references applied) before this node")
        return (run.total / run.count).reshape(-1, *run.target)


def with_run(extra_args: dict, run: RoutingRun) -> dict:
    """A copy of the sampler's ``extra_args`` whose model_options' transformer_options carry ``run``."""
    options = extra_args.get("model_options", {})
    transformer_options = {**options.get("transformer_options", {}), RUN_KEY: run}
    return {**extra_args, "model_options": {**options, "transformer_options": transformer_options}}
