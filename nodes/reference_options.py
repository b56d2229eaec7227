"""DreamO Reference Options: strength, step range and placement box of one reference in a DREAMO_REFS value."""

from __future__ import annotations

from comfy_api.latest import io

from ..dreamo_core.checks import finite_number
from ..dreamo_core.conditioning.placement import Box
from ..dreamo_core.conditioning.reference_strength import DEFAULT_REFERENCE_OPTIONS as DEFAULT
from ..dreamo_core.conditioning.reference_strength import check_percent_range, strength_to_bias
from ..dreamo_core.spec import FLUX_DEV
from .node_names import REFERENCE_OPTIONS
from .runtime.references import DreamORefs, DreamORefsType

NODE = REFERENCE_OPTIONS


def checked_box(use_box: bool, x: float, y: float, w: float, h: float) -> Box | None:
    if not use_box:
        return None  # the box widgets are unused: whatever they hold cannot change the result
    x, y, w, h = (finite_number(v, f"{NODE}: {name}") for v, name in ((x, "box_x"), (y, "box_y"), (w, "box_w"), (h, "box_h")))
    try:
        return Box(x, y, w, h)
    except ValueError as e:
        raise ValueError(f"{NODE}: {e}") from e


class DreamOReferenceOptions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamO_ReferenceOptions",
            display_name=NODE,
            category="conditioning/dreamo",
            description=(
                "Sets the strength, step range and optional placement box of the reference with the given index. "
                "Strength w adds log(w) to the attention logits of that reference's tokens: 1 = plain DreamO, "
                "0 = the reference has no influence, >1 = stronger. Outside start..end percent of the schedule the "
                "strength is 0. Returns a new references value (the input is not changed)."
            ),
            inputs=[
                DreamORefsType.Input("references", tooltip="References from Encode Reference."),
                io.Int.Input("index", default=1, min=1, max=FLUX_DEV.max_refs,
                             tooltip="DreamO index of the reference to change (as set in Encode Reference)."),
                io.Float.Input("strength", default=DEFAULT.strength, min=0.0, max=10.0, step=0.05,
                               tooltip="Reference strength w >= 0 (attention bias log w). 1 = unchanged DreamO."),
                io.Float.Input("start_percent", default=DEFAULT.start_percent, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the schedule where the reference starts acting (0 = first step)."),
                io.Float.Input("end_percent", default=DEFAULT.end_percent, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the schedule where the reference stops acting (1 = last step)."),
                io.Boolean.Input("use_box", default=DEFAULT.box is not None,
                                 tooltip="Place the reference in a box of the output instead of DreamO's default "
                                         "positions (its position ids are mapped into the box)."),
                io.Float.Input("box_x", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Box left edge as a fraction of the output width."),
                io.Float.Input("box_y", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Box top edge as a fraction of the output height."),
                io.Float.Input("box_w", default=1.0, min=0.01, max=1.0, step=0.01,
                               tooltip="Box width as a fraction of the output width."),
                io.Float.Input("box_h", default=1.0, min=0.01, max=1.0, step=0.01,
                               tooltip="Box height as a fraction of the output height."),
            ],
            outputs=[DreamORefsType.Output(display_name="references",
                                           tooltip="The references with this one's options set.")],
        )

    @classmethod
    def execute(cls, references: DreamORefs, index: int, strength: float = DEFAULT.strength,
                start_percent: float = DEFAULT.start_percent, end_percent: float = DEFAULT.end_percent,
                use_box: bool = DEFAULT.box is not None, box_x: float = 0.0, box_y: float = 0.0,
                box_w: float = 1.0, box_h: float = 1.0) -> io.NodeOutput:
        try:
            strength_to_bias(strength)
        except ValueError as e:
            raise ValueError(f"{NODE}: strength: {e}") from e
        check_percent_range(start_percent, end_percent, NODE)
        box = checked_box(use_box, box_x, box_y, box_w, box_h)
        if references is None:
            raise ValueError(f"{NODE}: connect references from Encode Reference")
        return io.NodeOutput(references.with_options(index, NODE, strength=float(strength),
                                                     start_percent=float(start_percent),
                                                     end_percent=float(end_percent), box=box))
