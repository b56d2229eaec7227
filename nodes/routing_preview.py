"""DreamO Routing Recorder / Preview: where did each reference land? Records the references' response maps
(the trainer's L_route quantity) during sampling and shows them as MASKs and an overlay on the result."""

from __future__ import annotations

import comfy.patcher_extension
import torch
import torch.nn.functional as F
from comfy_api.latest import io

from ..dreamo_core.checks import finite_number
from ..dreamo_core.conditioning.reference_strength import check_percent_range
from ..dreamo_core.routing.response_maps import normalize_map
from .model_info import WRAPPER_KEY, flux_params
from .node_names import ROUTING_PREVIEW, ROUTING_RECORDER
from .routing_recorder import RoutingRecorder

RECORDER = ROUTING_RECORDER
PREVIEW = ROUTING_PREVIEW
RoutingType = io.Custom("DREAMO_ROUTING")
OVERLAY_COLOR = torch.tensor([1.0, 0.25, 0.0])


def parse_blocks(text: str) -> list[int] | None:
    """"all" -> None; "0, 2, 5" -> [0, 2, 5]. Block numbers count double blocks first, then single blocks."""
    text = text.strip().lower()
    if text in ("", "all"):
        return None
    try:
        blocks = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError as e:
        raise ValueError(f"{RECORDER}: blocks must be 'all' or comma-separated block numbers like '0, 2, 5', got {text!r}") from e
    if any(b < 0 for b in blocks):
        raise ValueError(f"{RECORDER}: block numbers must be >= 0, got {blocks}")
    return blocks


def checked_blocks(blocks: list[int] | None, total: int) -> list[int] | None:
    """``blocks`` if every number names one of the model's ``total`` blocks; ValueError otherwise."""
    if blocks is not None and any(b >= total for b in blocks):
        raise ValueError(f"{RECORDER}: blocks {blocks}: this model has blocks 0-{total - 1} (double blocks first, "
                         "then single blocks)")
    return blocks


class DreamORoutingRecorder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamO_RoutingRecorder",
            display_name=RECORDER,
            category="conditioning/dreamo",
            description="Makes the model from Apply DreamO Conditioning record, while sampling, how strongly each "
                        "reference's tokens attend to each image position (chosen blocks and steps). Connect its "
                        "routing output to DreamO Routing Preview. The image itself is not changed.",
            inputs=[
                io.Model.Input("model", tooltip="The model output of Apply DreamO Conditioning."),
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
        check_percent_range(start_percent, end_percent, RECORDER)
        kind = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
        wrappers = model.get_wrappers(kind, WRAPPER_KEY)
        if not wrappers:
            raise ValueError(f"{RECORDER}: the model has no DreamO references applied; connect the model output of "
                             "Apply DreamO Conditioning")
        if not wrappers[-1].indices:
            raise ValueError(f"{RECORDER}: Apply DreamO Conditioning has no references, so there is no routing to "
                             "record; connect references to it")
        p = flux_params(model, RECORDER)
        chosen = checked_blocks(parse_blocks(blocks), p.depth + p.depth_single_blocks)
        sampling = model.get_model_object("model_sampling")
        recorder = RoutingRecorder(chosen, float(sampling.percent_to_sigma(start_percent)),
                                   float(sampling.percent_to_sigma(end_percent)))
        m = model.clone()
        m.remove_wrappers_with_key(kind, WRAPPER_KEY)
        m.add_wrapper_with_key(kind, WRAPPER_KEY, wrappers[-1].with_recorder(recorder))
        run_kind = comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE
        m.remove_wrappers_with_key(run_kind, WRAPPER_KEY)
        m.add_wrapper_with_key(run_kind, WRAPPER_KEY, recorder.run_wrapper)
        return io.NodeOutput(m, recorder)


class DreamORoutingPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamO_RoutingPreview",
            display_name=PREVIEW,
            category="conditioning/dreamo",
            description="Shows where each reference landed: one MASK per reference (its response map, scaled to "
                        "0..1, upsampled to the image) and the image with each map as an orange overlay. Connect the "
                        "decoded image of the sampler that used the recorder's model, so this runs after sampling.",
            inputs=[
                RoutingType.Input("routing", tooltip="From DreamO Routing Recorder."),
                io.Image.Input("image", tooltip="The decoded result of that sampling run (first image is used)."),
                io.Float.Input("opacity", default=0.6, min=0.0, max=1.0, step=0.05, tooltip="Overlay strength."),
            ],
            outputs=[io.Mask.Output(display_name="masks", tooltip="One response map per reference, in reference order."),
                     io.Image.Output(display_name="overlay", tooltip="The image with each reference's map overlaid.")],
        )

    @classmethod
    def execute(cls, routing: RoutingRecorder, image: torch.Tensor, opacity: float = 0.6) -> io.NodeOutput:
        opacity = finite_number(opacity, f"{PREVIEW}: opacity", 0.0, 1.0)
        maps = normalize_map(routing.maps().flatten(1)).reshape(routing.maps().shape)  # (n_refs, rows, cols)
        h, w = image.shape[1:3]
        masks = F.interpolate(maps[:, None], size=(h, w), mode="nearest")[:, 0]  # (n_refs, H, W)
        base = image[:1].float().cpu()  # (1, H, W, 3)
        alpha = (masks * opacity)[..., None]
        overlay = base * (1 - alpha) + OVERLAY_COLOR * alpha
        return io.NodeOutput(masks, overlay)
