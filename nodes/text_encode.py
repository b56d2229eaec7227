"""DreamO Text Encode: a FLUX prompt where ``[ref#i]`` becomes DreamO's learned T5 row for reference i."""

from __future__ import annotations

from comfy_api.latest import io

from ..dreamo_core.checks import finite_number
from ..dreamo_core.conditioning.placeholders import validate_placeholders
from .node_names import TEXT_ENCODE
from .runtime.model_info import T5_ROWS_ATTACHMENT
from .runtime.placeholder_tokens import (
    T5XXL_TOKENS,
    placeholder_pieces,
    replace_placeholder_pieces,
    spaced_placeholders,
)
from .runtime.references import DreamORefs, DreamORefsType

NODE = TEXT_ENCODE


def placeholder_tokens(clip, text: str, indices: list[int], rows) -> dict:
    """clip.tokenize(text) with the t5xxl pieces of every ``[ref#i]`` replaced by ``rows[i-1]``."""
    try:
        found = validate_placeholders(text, indices)
    except ValueError as e:
        raise ValueError(f"{NODE}: {e}") from e
    tokens = clip.tokenize(text)
    if not found:
        return tokens
    if T5XXL_TOKENS not in tokens:
        raise ValueError(f"{NODE}: the CLIP input has no T5-XXL encoder ({sorted(tokens)}); load clip_l + t5xxl "
                         "with DualCLIPLoader type 'flux'")
    if rows is None:
        raise ValueError(f"{NODE}: the prompt uses [ref#i] but the model carries no DreamO T5 rows; load the "
                         "original dreamo.safetensors (it holds dreamo_t5_embedding) in Load DreamO LoRA")
    t5 = getattr(clip.tokenizer, T5XXL_TOKENS, None)
    special = {t for t in (getattr(t5, "end_token", 1), getattr(t5, "pad_token", 0)) if t is not None}
    pieces = placeholder_pieces(lambda s: clip.tokenize(s)[T5XXL_TOKENS][0], special)
    batches, replaced = replace_placeholder_pieces(clip.tokenize(spaced_placeholders(text))[T5XXL_TOKENS], pieces, rows, NODE)
    if replaced != [p.index for p in found]:
        raise ValueError(f"{NODE}: found T5 pieces for {replaced}, expected placeholders {[p.index for p in found]}; "
                         "do not put [ref#i] inside weighted (text:1.2) groups")
    return {**tokens, T5XXL_TOKENS: batches}


class DreamOTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamO_TextEncode",
            display_name=NODE,
            category="conditioning/dreamo",
            description=(
                "Encodes a FLUX prompt (CLIP-L + T5-XXL) like CLIPTextEncodeFlux, but each [ref#i] reaches T5 as "
                "DreamO's learned placeholder row for reference i (CLIP-L sees the literal text). Without [ref#i] "
                "it is the plain FLUX text encode. Placeholders are a hint; the official code never uses them."
            ),
            inputs=[
                io.Clip.Input("clip", tooltip="FLUX text encoders (DualCLIPLoader: clip_l + t5xxl, type flux)."),
                io.Model.Input("model", tooltip="Output of Load DreamO LoRA with the original dreamo.safetensors "
                                                "(it carries the T5 placeholder rows)."),
                io.String.Input("text", multiline=True, dynamic_prompts=True,
                                tooltip="Prompt; write [ref#1] .. [ref#9] after the subject they name."),
                io.Float.Input("guidance", default=3.5, min=0.0, max=100.0, step=0.1,
                               tooltip="FLUX guidance (as FluxGuidance); DreamO uses 3.5, lower for faces."),
                DreamORefsType.Input("references", optional=True,
                                     tooltip="The references; every [ref#i] must name one of their indices."),
            ],
            outputs=[io.Conditioning.Output(tooltip="Positive conditioning for Apply DreamO Conditioning.")],
        )

    @classmethod
    def execute(cls, clip, model, text: str, guidance: float, references: DreamORefs | None = None) -> io.NodeOutput:
        if clip is None:
            raise ValueError(f"{NODE}: clip input is not connected or the checkpoint has no text encoder")
        guidance = finite_number(guidance, f"{NODE}: guidance", 0.0, 100.0)
        rows = model.get_attachment(T5_ROWS_ATTACHMENT)
        tokens = placeholder_tokens(clip, text, (references or DreamORefs()).indices, rows)
        return io.NodeOutput(clip.encode_from_tokens_scheduled(tokens, add_dict={"guidance": guidance}))
