"""The nodes' display names, written once: every error a node raises starts with its display name."""

LOAD_LORA = "Load DreamO LoRA"
ENCODE_REFERENCE = "DreamO Encode Reference"
REFERENCE_OPTIONS = "DreamO Reference Options"
APPLY_CONDITIONING = "Apply DreamO Conditioning"
TEXT_ENCODE = "DreamO Text Encode"
ROUTING_RECORDER = "DreamO Routing Recorder"
ROUTING_PREVIEW = "DreamO Routing Preview"
