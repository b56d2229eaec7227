"""Apply DreamO Conditioning: references into the positive conditioning, embeddings via a model wrapper."""

from __future__ import annotations

import logging

import comfy.patcher_extension
from comfy_api.latest import io

from ..dreamo_core.conditioning.embeddings import check_reference_indices
from ..dreamo_core.conditioning.reference_strength import ReferenceControl
from .node_names import APPLY_CONDITIONING
from .runtime.model_info import WRAPPER_KEY, attached_embeddings, flux_params
from .runtime.references import DreamORefs, DreamORefsType
from .runtime.run_checks import REFS_KEY, add_run_check
from .runtime.wrapper import DreamOWrapper

NODE = APPLY_CONDITIONING
log = logging.getLogger("DreamO")


def reference_controls(model, refs: DreamORefs) -> list[ReferenceControl]:
    """Each reference's strength with its start/end percent turned into sigmas of this model's schedule."""
    sampling = model.get_model_object("model_sampling")
    return [ReferenceControl(r.strength, float(sampling.percent_to_sigma(r.start_percent)),
                             float(sampling.percent_to_sigma(r.end_percent))) for r in refs.refs]


def with_references(conditioning: list, refs: DreamORefs) -> list:
    """New conditioning whose ``reference_latents`` are exactly ``refs`` (method "uxo"), replacing earlier ones."""
    out = []
    for tensor, values in conditioning:
        values = dict(values)
        if values.pop("reference_latents", None) is not None and not values.get(REFS_KEY):
            log.warning("%s: replacing reference latents that did not come from DreamO", NODE)
        values.pop("reference_latents_method", None)
        values.pop(REFS_KEY, None)
        if len(refs):
            values["reference_latents"] = [r.latent for r in refs.refs]
            values["reference_latents_method"] = "uxo"
            values[REFS_KEY] = len(refs)
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
                "Puts the DreamO references into the positive conditioning (reference latents, diagonal 'uxo' "
                "positions) and returns a model that adds DreamO's condition embeddings on the positive pass. "
                "Re-applying replaces earlier DreamO references. Leave the negative prompt as it is."
            ),
            inputs=[
                io.Model.Input("model", tooltip="Output of Load DreamO LoRA (it carries the embedding tables)."),
                io.Conditioning.Input("positive", tooltip="The positive prompt conditioning (e.g. after FluxGuidance)."),
                DreamORefsType.Input("references", optional=True,
                                     tooltip="References from Encode Reference. Without any, DreamO still marks "
                                             "the image tokens as the target, as the official pipeline does."),
            ],
            outputs=[
                io.Model.Output(display_name="model", tooltip="Model with the DreamO embedding wrapper."),
                io.Conditioning.Output(display_name="positive", tooltip="Positive conditioning with the references."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, references: DreamORefs | None = None) -> io.NodeOutput:
        params = flux_params(model, NODE)
        tables = attached_embeddings(model)
        if tables is None:
            raise ValueError(f"{NODE}: model has no DreamO embeddings; connect it through Load DreamO LoRA first")
        if tables.hidden_size != params.hidden_size:
            raise ValueError(f"{NODE}: embeddings are {tables.hidden_size} wide, the model is {params.hidden_size}")
        refs = references or DreamORefs()
        check_reference_indices(refs.indices, tables.max_index, f"{NODE}: references")
        m = model.clone()
        wrapper_type = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
        m.remove_wrappers_with_key(wrapper_type, WRAPPER_KEY)
        wrapper = DreamOWrapper(tables, refs.indices, [r.grid for r in refs.refs], reference_controls(model, refs),
                                [r.box for r in refs.refs])
        m.add_wrapper_with_key(wrapper_type, WRAPPER_KEY, wrapper)
        add_run_check(m)  # once per sampling run: refuses references on the negative prompt
        return io.NodeOutput(m, with_references(positive, refs))
