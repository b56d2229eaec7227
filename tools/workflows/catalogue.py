"""Model files the workflows load (download URL, ``models/`` folder) and the DreamO LoRA stacks."""

HF_DREAMO = "https://huggingface.co/ByteDance/DreamO/resolve/main/"
# the files every DreamO-on-FLUX.1-dev workflow loads, and the background remover of the automatic preprocessing
FLUX_MODEL, FLUX_VAE = "flux1-dev.safetensors", "ae.safetensors"
CLIP_L, T5_XXL = "clip_l.safetensors", "t5xxl_fp16.safetensors"
DREAMO_LORA, DREAMO_EMBEDDINGS = "dreamo_comfyui.safetensors", "embedding.safetensors"
BACKGROUND_REMOVER = "birefnet.safetensors"
# name -> (models/ folder, download url): the frontend's missing-models dialog (properties.models per node)
MODEL_FILES = {
    FLUX_MODEL: ("diffusion_models", "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev.safetensors"),
    CLIP_L: ("text_encoders", "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors"),
    T5_XXL: ("text_encoders",
             "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors"),
    FLUX_VAE: ("vae", "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/"
                      "split_files/vae/ae.safetensors"),
    DREAMO_LORA: ("loras", HF_DREAMO + "comfyui/dreamo_comfyui.safetensors"),
    DREAMO_EMBEDDINGS: ("loras", HF_DREAMO + "embedding.safetensors"),
    "dreamo_cfg_distill_comfyui.safetensors": ("loras", HF_DREAMO + "comfyui/dreamo_cfg_distill_comfyui.safetensors"),
    "dreamo_quality_lora_pos_comfyui.safetensors": ("loras",
                                                    HF_DREAMO + "comfyui/dreamo_quality_lora_pos_comfyui.safetensors"),
    "dreamo_quality_lora_neg_comfyui.safetensors": ("loras",
                                                    HF_DREAMO + "comfyui/dreamo_quality_lora_neg_comfyui.safetensors"),
    "dreamo_sft_lora.safetensors": ("loras", HF_DREAMO + "v1.1/dreamo_sft_lora.safetensors"),
    "dreamo_dpo_lora.safetensors": ("loras", HF_DREAMO + "v1.1/dreamo_dpo_lora.safetensors"),
    # saved under the name the workflow uses (the file is diffusion_pytorch_model.safetensors upstream)
    "flux-turbo.safetensors": ("loras", "https://huggingface.co/alimama-creative/FLUX.1-Turbo-Alpha/resolve/main/"
                                        "diffusion_pytorch_model.safetensors"),
    BACKGROUND_REMOVER: ("background_removal",
                         "https://huggingface.co/Comfy-Org/BiRefNet/resolve/main/background_removal/birefnet.safetensors"),
}
# The MediaPipe Face Landmarker file for core's LoadMediaPipeFaceLandmarker (models/detection): we know of no
# official download URL, so it gets no properties.models entry; the note says what to put there.
FACE_MODEL = "face_landmarker.safetensors"
# The subject LoRA is the user's own (python -m training.tune_subject): no download either.
SUBJECT_LORA = "dreamo_subject_lora.safetensors"
NO_DOWNLOAD = (FACE_MODEL, SUBJECT_LORA)

# The LoRA stacks: (file, strength, title). Titles say which LoRA it is, so the four v1 loaders differ.
CFG_DISTILL = ("dreamo_cfg_distill_comfyui.safetensors", 1.0, "DreamO cfg-distill LoRA")
TURBO = ("flux-turbo.safetensors", 1.0, "FLUX Turbo LoRA (12 steps)")
V1_STACK = [CFG_DISTILL, TURBO,
            ("dreamo_quality_lora_pos_comfyui.safetensors", 0.15, "DreamO quality LoRA (positive, +0.15)"),
            ("dreamo_quality_lora_neg_comfyui.safetensors", -0.8, "DreamO quality LoRA (negative, -0.8)")]
V11_STACK = [CFG_DISTILL, ("dreamo_sft_lora.safetensors", 1.0, "DreamO v1.1 SFT LoRA"),
             ("dreamo_dpo_lora.safetensors", 1.25, "DreamO v1.1 DPO LoRA")]
