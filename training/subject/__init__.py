"""DreamTuner-style subject tuning on one image, on the trainer: ``tune`` (the ``python -m training.tune_subject``
command), ``dataset`` (the self-reference views of the image), ``lora`` (base files merged, the new LoRA, its
export as an ordinary FLUX LoRA)."""
