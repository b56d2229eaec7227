"""Load DreamO LoRA: DreamO LoRA through ComfyUI's patcher + the task/index embedding tables."""

from __future__ import annotations

from pathlib import Path

import folder_paths
from comfy_api.latest import io

from ..dreamo_core.checks import finite_number
from ..dreamo_core.weights.formats import DreamOWeights, LoraFormat, load_safetensors, parse_dreamo_state_dict
from .node_names import LOAD_LORA
from .runtime.dreamo_model import add_dreamo_wrappers
from .runtime.lora_patches import add_lora
from .runtime.model_info import (
    EMBEDDINGS_ATTACHMENT,
    T5_ROWS_ATTACHMENT,
    attached_embeddings,
    flux_params,
    spec_for_model,
)

NODE = LOAD_LORA
NONE = "None"


def load_file(name: str, model: object, what: str) -> DreamOWeights:
    """Read (core's safetensors-only reader, never pickle) and check one file from the ``loras`` folder for this
    model's sizes. ValueError naming the node, the input and the file."""
    path = folder_paths.get_full_path_or_raise("loras", name)
    spec = spec_for_model(model, NODE)
    try:
        return parse_dreamo_state_dict(load_safetensors(path), spec, name)
    except ValueError as e:
        detail = str(e).removeprefix(f"{name}: ").removeprefix(f"{Path(path).name}: ")
        raise ValueError(f"{NODE}: {what} '{name}': {detail}") from e


class LoadDreamOLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        files = [NONE, *folder_paths.get_filename_list("loras")]
        return io.Schema(
            node_id="DreamO_LoadLoRA",
            display_name=NODE,
            category="conditioning/dreamo",
            description=(
                "Applies a DreamO LoRA to a FLUX model with ComfyUI's own LoRA patching and attaches DreamO's "
                "task/index embedding tables to the returned model (the input model is not changed). Accepts the "
                "original dreamo.safetensors (LoRA + embeddings), ComfyUI-format DreamO LoRAs with a separate "
                "embedding.safetensors, or only the embedding file (chain core LoRA loaders for the rest)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="A FLUX.1-dev model (any precision: bf16, fp8, GGUF)."),
                io.Combo.Input("lora_name", options=files, default=NONE,
                               tooltip="DreamO LoRA from models/loras: dreamo.safetensors (original, includes the "
                                       "embeddings) or dreamo_comfyui.safetensors. 'None' = embeddings only."),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="LoRA strength. 0 leaves the weights exactly as they are."),
                io.Combo.Input("embedding_name", options=files, default=NONE,
                               tooltip="embedding.safetensors (DreamO task/index tables) from models/loras. Needed "
                                       "unless the LoRA file is the original dreamo.safetensors."),
            ],
            outputs=[io.Model.Output(tooltip="The model with the DreamO LoRA and embedding tables.")],
        )

    @classmethod
    def execute(cls, model, lora_name: str, strength: float, embedding_name: str) -> io.NodeOutput:
        flux_params(model, NODE)  # FLUX.1-dev-shaped, before any file is read
        strength = finite_number(strength, f"{NODE}: strength", -10.0, 10.0)  # JSON NaN passes ComfyUI's min/max
        m = model.clone()
        lora = load_file(lora_name, model, "lora_name") if lora_name != NONE else None
        emb = load_file(embedding_name, model, "embedding_name") if embedding_name != NONE else None
        if emb is not None and emb.lora_format is not LoraFormat.NONE:
            raise ValueError(f"{NODE}: embedding_name '{embedding_name}' holds a LoRA ({emb.kind}); "
                             "pick embedding.safetensors there and the LoRA in lora_name")
        if lora is not None and lora.lora_format is not LoraFormat.NONE and strength != 0:
            add_lora(m, lora, strength, NODE)
        tables = next((w.embeddings for w in (emb, lora) if w is not None and w.embeddings is not None),
                      attached_embeddings(model))
        if tables is None:
            raise ValueError(f"{NODE}: no DreamO embeddings: pick embedding.safetensors in embedding_name "
                             "(or use the original dreamo.safetensors as lora_name)")
        m.set_attachments(EMBEDDINGS_ATTACHMENT, tables)
        add_dreamo_wrappers(m)  # samples each conditioning item with its own DreamO layout; checks each run
        t5_rows = next((w.t5_rows for w in (emb, lora) if w is not None and w.t5_rows is not None),
                       model.get_attachment(T5_ROWS_ATTACHMENT))
        if t5_rows is not None:
            m.set_attachments(T5_ROWS_ATTACHMENT, t5_rows)  # (10, 4096): [ref#1]..[ref#9], [res] for DreamO Text Encode
        return io.NodeOutput(m)
