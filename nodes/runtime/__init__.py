"""What the DreamO nodes install on a model and what runs while ComfyUI samples it (the nodes themselves are the
modules one level up):

- ``conditioning_layout``: the DreamO layout each conditioning item carries (set by Apply) and what it becomes for
  one run; ``conditioning_guard``: the hook that refuses a model without DreamO sampling such a conditioning;
- ``dreamo_model``: the four stateless wrappers Load DreamO LoRA installs; ``sampling_run``: one run's layouts by
  cond uuid (SAMPLER_SAMPLE) and each call's items (APPLY_MODEL); ``wrapper``: DreamO per batch item
  (DIFFUSION_MODEL: condition embedding, ids, strength bias via a one-shot ``post_input`` patch);
  ``flux_arguments``: wrapped arguments found by name; ``transformer_options``: ComfyUI's per-call conventions
  (sigma, patches, what cannot compose); ``tensor_memo``: per-layout values;
- ``run_checks``: the OUTER_SAMPLE check of each sampling run; ``routing_record``: the routing maps recorded
  during sampling (DreamO Routing Recorder / Preview);
- ``lora_patches``: DreamO LoRA files -> ComfyUI weight patches; ``model_info``: FLUX.1 checks, sizes, attachments;
- ``references``: the DREAMO_REFS value; ``placeholder_tokens``: ``[ref#i]`` in ComfyUI token lists;
- ``comfy_support``: the ComfyUI version check (by features); ``migration``: node replacements for old graphs.
"""
