"""What the DreamO nodes install on a model and what runs while ComfyUI samples it (the nodes themselves are the
modules one level up):

- ``wrapper``: the per-model DIFFUSION_MODEL wrapper (condition embedding, ids, strength bias via a one-shot
  ``post_input`` patch); ``flux_arguments``: Flux ``_forward`` arguments found by name; ``transformer_options``:
  ComfyUI's per-call conventions (positive items, sigma, patches); ``tensor_memo``: per-layout values;
- ``run_checks``: the OUTER_SAMPLE check of each sampling run; ``routing_record``: the routing maps recorded
  during sampling (DreamO Routing Recorder / Preview);
- ``lora_patches``: DreamO LoRA files -> ComfyUI weight patches; ``model_info``: FLUX.1 checks, sizes, attachments;
- ``references``: the DREAMO_REFS value; ``placeholder_tokens``: ``[ref#i]`` in ComfyUI token lists;
- ``comfy_support``: the ComfyUI version check (by features); ``migration``: node replacements for old graphs.
"""
