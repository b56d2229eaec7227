"""Preference post-training on the trainer (Flow-DPO, localized or not, and its SFT control), one room:
``config`` (the ``preference:`` section), ``dataset`` (pair rows), ``batch`` (a step's pairs), ``objective`` (the
model, the reference pass and the losses as the loop's objective), ``stage`` (train and export the new LoRA),
``pairs`` (on-policy pairs from any sampler and scorer), ``measure`` (a sample's change outside M), ``command`` (``python -m training.preference``). The loss
itself is pure torch in ``dreamo_core.preference.flow_dpo``."""
