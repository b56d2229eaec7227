"""The node types the workflows use: sockets, widget kinds and width (the layout sizes nodes from them)."""

# type: (inputs [(name, type)], outputs [(name, type)], widget kinds ("w" one line, "text", "image"), width)
SOCKETS = {
    "UNETLoader": ([], [("MODEL", "MODEL")], "ww", 330),
    "DualCLIPLoader": ([], [("CLIP", "CLIP")], "wwww", 330),
    "VAELoader": ([], [("VAE", "VAE")], "w", 330),
    "LoraLoaderModelOnly": ([("model", "MODEL")], [("MODEL", "MODEL")], "ww", 380),
    "DreamO_LoadLoRA": ([("model", "MODEL")], [("MODEL", "MODEL")], "www", 340),
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")], "wwimage", 320),
    "DreamO_EncodeReference": ([("image", "IMAGE"), ("vae", "VAE"), ("mask", "MASK"), ("references", "DREAMO_REFS")],
                               [("references", "DREAMO_REFS")], "wwww", 320),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], "text", 420),
    "FluxGuidance": ([("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")], "w", 300),
    "DreamO_ApplyConditioning": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("references", "DREAMO_REFS")],
                                 [("model", "MODEL"), ("positive", "CONDITIONING")], "", 300),
    "EmptySD3LatentImage": ([], [("LATENT", "LATENT")], "www", 300),
    "KSampler": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT")], [("LATENT", "LATENT")], "wwwwwww", 320),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")], "", 240),
    "SaveImage": ([("images", "IMAGE")], [], "wimage", 340),
    "DreamO_ReferenceOptions": ([("references", "DREAMO_REFS")], [("references", "DREAMO_REFS")], "wwwwwwww", 320),
    "DreamO_TextEncode": ([("clip", "CLIP"), ("model", "MODEL"), ("references", "DREAMO_REFS")],
                          [("CONDITIONING", "CONDITIONING")], "textw", 420),
    "ModelSamplingFlux": ([("model", "MODEL")], [("MODEL", "MODEL")], "wwww", 300),
    "DreamO_RoutingRecorder": ([("model", "MODEL")], [("model", "MODEL"), ("routing", "DREAMO_ROUTING")], "www", 320),
    "DreamO_RoutingPreview": ([("routing", "DREAMO_ROUTING"), ("image", "IMAGE")],
                              [("masks", "MASK"), ("overlay", "IMAGE")], "w", 300),
    # core preprocessing (ComfyUI 0.33: comfy_extras/nodes_bg_removal.py, nodes_mediapipe.py, nodes_sdpose.py)
    "LoadBackgroundRemovalModel": ([], [("bg_model", "BACKGROUND_REMOVAL")], "w", 330),
    "RemoveBackground": ([("bg_removal_model", "BACKGROUND_REMOVAL"), ("image", "IMAGE")], [("mask", "MASK")], "", 300),
    "LoadMediaPipeFaceLandmarker": ([], [("FACE_DETECTION_MODEL", "FACE_DETECTION_MODEL")], "w", 330),
    "MediaPipeFaceLandmarker": ([("face_detection_model", "FACE_DETECTION_MODEL"), ("image", "IMAGE")],
                                [("face_landmarks", "FACE_LANDMARKS"), ("bboxes", "BOUNDING_BOX")], "wwww", 330),
    "CropByBBoxes": ([("image", "IMAGE"), ("bboxes", "BOUNDING_BOX")], [("IMAGE", "IMAGE")], "wwww", 320),
    # img2img background fusion (core): the background as the starting latent, a box mask limiting the change
    "ImageScale": ([("image", "IMAGE")], [("IMAGE", "IMAGE")], "wwww", 320),
    "VAEEncode": ([("pixels", "IMAGE"), ("vae", "VAE")], [("LATENT", "LATENT")], "", 240),
    "SolidMask": ([], [("MASK", "MASK")], "www", 300),
    "MaskComposite": ([("destination", "MASK"), ("source", "MASK")], [("MASK", "MASK")], "www", 300),
    "GrowMask": ([("mask", "MASK")], [("MASK", "MASK")], "ww", 300),
    "SetLatentNoiseMask": ([("samples", "LATENT"), ("mask", "MASK")], [("LATENT", "LATENT")], "", 300),
    # regional prompts (core): each region's prompt set to an area of the picture, the regions combined
    "ConditioningSetAreaPercentage": ([("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")],
                                      "wwwww", 320),
    "ConditioningCombine": ([("conditioning_1", "CONDITIONING"), ("conditioning_2", "CONDITIONING")],
                            [("CONDITIONING", "CONDITIONING")], "", 280),
    "MarkdownNote": ([], [], "", 0),
}
# core node types the auto-preprocessing workflows need (absent from ComfyUI 0.3.64)
PREPROCESSING_TYPES = ("LoadBackgroundRemovalModel", "RemoveBackground", "LoadMediaPipeFaceLandmarker",
                       "MediaPipeFaceLandmarker", "CropByBBoxes")

