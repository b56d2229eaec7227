"""DreamO Routing Recorder: makes the model from Apply DreamO Conditioning record, during sampling, where each
reference's tokens land (its response maps, the trainer's L_route quantity) for DreamO Routing Preview."""

from __future__ import annotations

import comfy.patcher_extension
from comfy_api.latest import io

from ..dreamo_core.conditioning.reference_strength import check_percent_range
from .node_names import ROUTING_RECORDER
from .runtime.dreamo_model import has_dreamo_wrappers
from .runtime.model_info import flux_params
from .runtime.routing_record import RoutingRecorder, RoutingType

NODE = ROUTING_RECORDER
RECORDER_KEY = "dreamo_routing"  # its SAMPLER_SAMPLE wrapper (a fresh record per run)


def parse_blocks(text: str) -> list[int] | None:
    """"all" -> None; "0, 2, 5" -> [0, 2, 5]. Block numbers count double blocks first, then single blocks."""
    text = text.strip().lower()
    if text in ("", "all"):
        return None
    try:
        blocks = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError as e:
        raise ValueError(f"{NODE}: blocks must be 'all' or comma-separated block numbers like '0, 2, 5', got {text!r}") from e
    if not blocks:
        raise ValueError(f"{NODE}: blocks {text!r} names no block, so nothing would be recorded; write 'all' or "
                         "block numbers like '0, 2, 5'")
    if any(b < 0 for b in blocks):
        raise ValueError(f"{NODE}: block numbers must be >= 0, got {blocks}")
    return blocks


def checked_blocks(blocks: list[int] | None, total: int) -> list[int] | None:
    """``blocks`` if every number names one of the model's ``total`` blocks; ValueError otherwise."""
    if blocks is not None and any(b >= total for b in blocks):
        raise ValueError(f"{NODE}: blocks {blocks}: this model has blocks 0-{total - 1} (double blocks first, "
                         "then single blocks)")
    return blocks


class DreamORoutingRecorder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamO_RoutingRecorder",
            display_name=NODE,
            category="conditioning/dreamo",
            description="Makes the DreamO model record, while sampling, how strongly each reference's tokens attend "
                        "to each image position (chosen blocks and steps; the references of the sampler's DreamO "
                        "prompt). Connect its routing output to DreamO Routing Preview. The image itself is not "
                        "changed.",
            inputs=[
                io.Model.Input("model", tooltip="The DreamO model (from Load DreamO LoRA or Apply DreamO Conditioning)."),
                io.String.Input("blocks", default="all",
                                tooltip="'all' or block numbers, e.g. '2, 8, 14' (double blocks first, then single)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Record from this fraction of the schedule (0 = first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Record up to this fraction of the schedule (1 = last step)."),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="The same model, recording routing maps."),
                     RoutingType.Output(display_name="routing", tooltip="The recorder, for DreamO Routing Preview.")],
        )

    @classmethod
    def execute(cls, model, blocks: str = "all", start_percent: float = 0.0, end_percent: float = 1.0) -> io.NodeOutput:
        check_percent_range(start_percent, end_percent, NODE)
        if not has_dreamo_wrappers(model):
            raise ValueError(f"{NODE}: model: this model is not a DreamO model; connect the model output of Load "
                             "DreamO LoRA (or of Apply DreamO Conditioning)")
        p = flux_params(model, NODE)
        chosen = checked_blocks(parse_blocks(blocks), p.depth + p.depth_single_blocks)
        recorder = RoutingRecorder(chosen, start_percent, end_percent)  # percents: sigmas of the model that samples
        m = model.clone()
        run_kind = comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE
        m.remove_wrappers_with_key(run_kind, RECORDER_KEY)
        m.add_wrapper_with_key(run_kind, RECORDER_KEY, recorder.run_wrapper)
        return io.NodeOutput(m, recorder)
