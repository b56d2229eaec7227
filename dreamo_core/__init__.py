"""DreamO core: pure-torch building blocks (no ComfyUI import anywhere in this package)."""

from .conditioning.embeddings import ConditionEmbeddings, build_condition_embeddings, check_reference_indices
from .conditioning.packing import pack_latents, unpack_latents
from .conditioning.position_ids import dreamo_position_ids, grid_position_ids, reference_offsets
from .conditioning.reference_images import PreparedReference, prepare_reference
from .spec import FLUX_DEV, DreamOSpec
from .weights.formats import DreamOWeights, LoraFormat, load_dreamo_weights, parse_dreamo_state_dict

__all__ = [
    "FLUX_DEV",
    "ConditionEmbeddings",
    "DreamOSpec",
    "DreamOWeights",
    "LoraFormat",
    "PreparedReference",
    "build_condition_embeddings",
    "check_reference_indices",
    "dreamo_position_ids",
    "grid_position_ids",
    "load_dreamo_weights",
    "pack_latents",
    "parse_dreamo_state_dict",
    "prepare_reference",
    "reference_offsets",
    "unpack_latents",
]
