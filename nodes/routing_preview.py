"""DreamO Routing Preview: the response maps the Routing Recorder kept of the last sampling run, as one MASK per
reference and an overlay on the decoded image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from comfy_api.latest import io

from ..dreamo_core.checks import finite_number
from ..dreamo_core.routing.response_maps import normalize_map
from .node_names import ROUTING_PREVIEW
from .runtime.routing_record import RoutingRecorder, RoutingType

NODE = ROUTING_PREVIEW
OVERLAY_COLOR = torch.tensor([1.0, 0.25, 0.0])


def rgb_image(image: object) -> torch.Tensor:
    """The first image of an IMAGE batch as (1, H, W, 3) float on the CPU: RGBA loses its alpha (as core's VAE
    Encode), a 1-channel image becomes grey RGB; other shapes are a ValueError naming the input."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] == 0:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{NODE}: image must be an IMAGE batch (B, H, W, C) with at least one image, got {got}")
    channels = image.shape[-1]
    if channels not in (1, 3, 4):
        raise ValueError(f"{NODE}: image has {channels} channels; connect an RGB (3), RGBA (4) or grey (1) IMAGE, "
                         "e.g. the VAE Decode output of the sampler that used the recorder's model")
    return image[:1, ..., :3].float().cpu().expand(-1, -1, -1, 3)


class DreamORoutingPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamO_RoutingPreview",
            display_name=NODE,
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
        opacity = finite_number(opacity, f"{NODE}: opacity", 0.0, 1.0)
        base = rgb_image(image)  # (1, H, W, 3)
        maps = normalize_map(routing.maps().flatten(1)).reshape(routing.maps().shape)  # (n_refs, rows, cols)
        h, w = base.shape[1:3]
        masks = F.interpolate(maps[:, None], size=(h, w), mode="nearest")[:, 0]  # (n_refs, H, W)
        alpha = (masks * opacity)[..., None]
        overlay = base * (1 - alpha) + OVERLAY_COLOR * alpha
        return io.NodeOutput(masks, overlay)
