"""Official DreamO weight files: format detection and checks, the LoRA target layout, merging into diffusers."""
