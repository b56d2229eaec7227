"""Apply DreamO Conditioning: the references and their DreamO layout into every item of the positive conditioning.

Nothing is put on the model: each conditioning item carries its own layout (``runtime/conditioning_layout.py``),
so crossed chains, several Applies, area-combined regions and any guider get exactly what each prompt was given;
the DreamO model (Load DreamO LoRA) reads it per item while sampling."""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ..dreamo_core.conditioning.embeddings import check_reference_indices
from .node_names import APPLY_CONDITIONING
from .runtime.conditioning_guard import guarded
from .runtime.conditioning_layout import LAYOUT_KEY, layout_of
from .runtime.dreamo_model import has_dreamo_wrappers
from .runtime.model_info import attached_embeddings, flux_params
from .runtime.references import DreamORefs, DreamORefsType

NODE = APPLY_CONDITIONING
log = logging.getLogger("DreamO")


def with_references(conditioning: list, refs: DreamORefs) -> list:
    """New conditioning whose items carry exactly ``refs``: their latents as ``reference_latents`` (method "uxo")
    and their DreamO layout, replacing earlier ones (re-applying replaces, never stacks)."""
    out = []
    for tensor, values in conditioning:
        values = dict(values)
        if values.pop("reference_latents", None) is not None and layout_of(values) is None:
            log.warning("%s: replacing reference latents that did not come from DreamO", NODE)
        values.pop("reference_latents_method", None)
        if len(refs):
            values["reference_latents"] = [r.latent for r in refs.refs]
            values["reference_latents_method"] = "uxo"
        values[LAYOUT_KEY] = refs
        out.append([tensor, values])
    return out


class ApplyDreamOConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamO_ApplyConditioning",
            display_name=NODE,
            category="conditioning/dreamo",
            description=(
                "Puts the DreamO references and their layout (indices, strengths, step ranges, boxes) into every item "
                "of the positive conditioning (reference latents, diagonal 'uxo' positions). The DreamO model from "
                "Load DreamO LoRA adds DreamO's condition embeddings to exactly the prompts that carry a layout, so "
                "two Applies on areas or masks (ConditioningSetArea / SetMask, then Combine) give each region its "
                "own references. Re-applying replaces earlier DreamO references. Leave the negative prompt as it is."
            ),
            inputs=[
                io.Model.Input("model", tooltip="Output of Load DreamO LoRA (it carries the embedding tables and samples DreamO)."),
                io.Conditioning.Input("positive", tooltip="The positive prompt conditioning (e.g. after FluxGuidance)."),
                DreamORefsType.Input("references", optional=True,
                                     tooltip="References from Encode Reference. Without any, DreamO still marks "
                                             "the image tokens as the target, as the official pipeline does."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="The same model (checked; nothing is added to it)."),
                io.Conditioning.Output(display_name="positive", tooltip="Positive conditioning with the references."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, references: DreamORefs | None = None) -> io.NodeOutput:
        params = flux_params(model, NODE)
        tables = attached_embeddings(model)
        if tables is None or not has_dreamo_wrappers(model):
            raise ValueError(f"{NODE}: model has no DreamO embeddings; connect it through Load DreamO LoRA first")
        if tables.hidden_size != params.hidden_size:
            raise ValueError(f"{NODE}: embeddings are {tables.hidden_size} wide, the model is {params.hidden_size}")
        refs = references or DreamORefs()
        check_reference_indices(refs.indices, tables.max_index, f"{NODE}: references")
        # the guard: a clear error if a model without DreamO samples this conditioning (where ComfyUI allows it)
        return io.NodeOutput(model, guarded(with_references(positive, refs), model))
