"""The routing record behind DreamO Routing Recorder / Preview: response maps recorded during sampling, with no
state shared between runs.

A ``SAMPLER_SAMPLE`` wrapper starts a fresh ``RoutingRun`` for every sampling run, with the recorder's step range
turned into sigmas of the model that samples, and passes it down in that run's own copy of
``model_options["transformer_options"]``; the DreamO wrapper then installs, per model call in range, an
``optimized_attention_override`` that adds each reference's response map (dreamo_core.routing.response_maps, the
trainer's L_route quantity) of the call's first DreamO item to that run and runs the attention unchanged. The
recorder keeps only the last finished run, so clones sampled alternately (or on several GPUs at once) never mix
their maps; the run also counts what it saw, so an empty record says why.
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
from .sampling_run import sampler_guider, with_transformer_option

RECORDER = ROUTING_RECORDER
ROUTING_KEY = "dreamo_routing_run"  # transformer_options key of a recording run
RoutingType = io.Custom("DREAMO_ROUTING")  # the value: a RoutingRecorder (Recorder's output, Preview's input)


class RoutingRun:
    """Summed (n_refs, target_tokens) maps of one sampling run (locked: multi-GPU conds run in threads), the
    recorder's settings with its step range in sigmas of the sampling model, and counts of the calls it saw.

    blocks: attention-call indices within one forward (double blocks 0..depth-1, then single blocks), None = all."""

    def __init__(self, blocks: frozenset[int] | None, sigma_start: float, sigma_end: float, mode: str = "softmax"):
        self.blocks, self.sigma_start, self.sigma_end, self.mode = blocks, sigma_start, sigma_end, mode
        self.total: torch.Tensor | None = None
        self.count = 0
        self.target: tuple[int, int] | None = None
        self.reference_calls = 0  # model calls with DreamO references
        self.lock = threading.Lock()

    def to(self, device_or_dtype: Any) -> RoutingRun:
        return self

    def active(self, sigma: float | None) -> bool:
        return sigma is None or self.sigma_end <= sigma <= self.sigma_start

    def add(self, maps: torch.Tensor, target: tuple[int, int]) -> None:
        maps = maps.float().cpu()
        with self.lock:
            self.total = maps if self.total is None else self.total + maps
            self.count += 1
            self.target = target

    def override_for_call(self, sigma: float | None, item: int, text_tokens: int, target: tuple[int, int],
                          ref_tokens: Sequence[int], previous: Callable | None) -> Callable | None:
        """A fresh per-forward attention override recording batch item ``item`` into this run (its call counter
        gives the block index), or None when this call's sigma is outside the recorder's range."""
        with self.lock:
            self.reference_calls += 1
        if not self.active(sigma):
            return None
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
                    one = slice(item, item + 1)
                    self.add(joint_attention_responses(q[one], k[one], refs, image, self.mode)[0], target)
            if previous is not None:
                return previous(func, q, k, *args, **kwargs)
            return func(q, k, *args, **kwargs)

        return attention_override

    def why_empty(self) -> str:
        """Why nothing was recorded (for the Preview's message)."""
        if not self.reference_calls:
            return ("the last sampling run of the recorder's model had no DreamO references in its prompt: connect "
                    "the positive output of Apply DreamO Conditioning, with references, to that sampler")
        return (f"none of the last run's steps lay between the recorder's start_percent and end_percent (sigmas "
                f"{self.sigma_start:.4g} .. {self.sigma_end:.4g}); widen the range")


class RoutingRecorder:
    """Which blocks and which part of the schedule (percents) to record, and the last finished run."""

    def __init__(self, blocks: Sequence[int] | None, start_percent: float, end_percent: float, mode: str = "softmax"):
        self.blocks = None if blocks is None else frozenset(blocks)
        self.start_percent, self.end_percent, self.mode = start_percent, end_percent, mode
        self.latest: RoutingRun | None = None

    def to(self, device_or_dtype: Any) -> RoutingRecorder:
        return self

    def run_wrapper(self, executor: Any, *args: Any, **kwargs: Any) -> Any:
        """``SAMPLER_SAMPLE`` wrapper: sample with a fresh RoutingRun (the percents as sigmas of the guider's
        model) in this run's transformer_options, then make it the latest."""
        guider = sampler_guider(executor, args, kwargs)
        sampling = guider.model_patcher.get_model_object("model_sampling")
        run = RoutingRun(self.blocks, float(sampling.percent_to_sigma(self.start_percent)),
                         float(sampling.percent_to_sigma(self.end_percent)), self.mode)
        args, kwargs = with_transformer_option(executor, args, kwargs, ROUTING_KEY, run, RECORDER)
        out = executor(*args, **kwargs)
        self.latest = run  # one assignment: a reader sees the previous or this finished run
        return out

    def maps(self) -> torch.Tensor:
        """(n_refs, rows, cols) mean response maps of the last finished run; ValueError if nothing was recorded."""
        run = self.latest
        if run is None:
            raise ValueError(f"{ROUTING_PREVIEW}: routing: no sampling run has used the model from {RECORDER} yet; "
                             "run a sampler with that model before this node (connect the decoded image of that "
                             "sampler to this node's image input)")
        if run.total is None or run.target is None:
            raise ValueError(f"{ROUTING_PREVIEW}: routing: no routing maps were recorded: {run.why_empty()}")
        return (run.total / run.count).reshape(-1, *run.target)
