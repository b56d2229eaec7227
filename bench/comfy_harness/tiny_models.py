"""FLUX models from ComfyUI's own classes with seeded random weights: the tiny FLUX.1 of the node tests, other
models of the FLUX family (detected from their key signatures as real files are), any size for the benches, and
a tiny VAE (comfy_integration.md §8)."""

from __future__ import annotations

import torch

HIDDEN, HEADS, CTX, VEC = 128, 2, 48, 32
# the sizes of the tiny FLUX.1 the node tests use; every other FluxParams field comes from ComfyUI's detection
TINY_SIZES = dict(vec_in_dim=VEC, context_in_dim=CTX, hidden_size=HIDDEN, num_heads=HEADS, depth=1,
                  depth_single_blocks=1, axes_dim=[16, 24, 24])


def random_state_dict(module: torch.nn.Module, seed: int, scale: float = 0.05, device: str | None = None,
                      dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """N(0, scale²) tensors shaped as ``module``'s state dict, in its order, from one seeded generator on
    ``device`` (None: the CPU), stored in ``dtype`` (a full FLUX.1-dev is made on the GPU in bf16: 24 GB)."""
    g = torch.Generator(device or "cpu").manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g, device=device or "cpu") * scale).to(dtype)
            for k, v in module.state_dict().items()}


def flux1_key_signature(depth: int = 1, depth_single: int = 1) -> dict[str, torch.Tensor]:
    """The keys (meta tensors, FLUX.1-dev shapes) by which ComfyUI's model detection recognises a FLUX.1 file."""
    meta = torch.device("meta")
    sd = {"img_in.weight": torch.empty(3072, 64, device=meta), "txt_in.weight": torch.empty(3072, 4096, device=meta),
          "vector_in.in_layer.weight": torch.empty(3072, 768, device=meta),
          "guidance_in.in_layer.weight": torch.empty(3072, 256, device=meta)}
    for i in range(depth):
        sd[f"double_blocks.{i}.img_attn.norm.key_norm.scale"] = torch.empty(128, device=meta)
    for i in range(depth_single):
        sd[f"single_blocks.{i}.norm.key_norm.scale"] = torch.empty(128, device=meta)
    return sd


FLUX_FAMILY = {  # name -> (keys to add to the FLUX.1 signature, keys to drop, size overrides)
    "flux1-schnell": ({}, ("guidance_in.in_layer.weight",), {}),
    "flux1-fill": ({"img_in.weight": (3072, 384)}, (), {}),
    "chroma": ({"distilled_guidance_layer.norms.0.scale": (128,)}, ("vector_in.in_layer.weight", "guidance_in.in_layer.weight"),
               {"in_dim": 64, "out_dim": HIDDEN, "hidden_dim": 64, "n_layers": 1}),
    "flux2": ({"double_stream_modulation_img.lin.weight": (3072, 3072)}, ("vector_in.in_layer.weight",),
              {"num_heads": 1, "axes_dim": [32, 32, 32, 32]}),
}


def tiny_family_model(name: str):
    """A tiny ModelPatcher of another model of the FLUX family (FLUX_FAMILY), detected by ComfyUI from its key
    signature as a real file would be, or None where this ComfyUI does not know that family (FLUX.2 < 0.3.72)."""
    import comfy.model_detection
    import comfy.model_patcher

    add, drop, sizes = FLUX_FAMILY[name]
    sd = {k: v for k, v in flux1_key_signature().items() if k not in drop}
    sd.update({k: torch.empty(*shape, device="meta") for k, shape in add.items()})
    unet_config = comfy.model_detection.detect_unet_config(sd, "")
    if unet_config is None or (name == "flux2" and unet_config.get("image_model") != "flux2"):
        return None
    has_vec = "vec_in_dim" in unet_config  # Chroma on 0.3.64 has no such field
    unet_config.update(TINY_SIZES)
    unet_config.update(sizes)
    if not has_vec:
        del unet_config["vec_in_dim"]
    elif "vector_in.in_layer.weight" not in sd:
        unet_config["vec_in_dim"] = None
    mc = comfy.model_detection.model_config_from_unet_config(unet_config)
    if mc is None:
        return None
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(mc.get_model({}), load_device=cpu, offload_device=cpu)


def flux_config(sizes: dict):
    """ComfyUI's model config for a FLUX.1 file, detected the way a real file is (so fields newer ComfyUI
    versions add, like ``txt_ids_dims``, are filled by ComfyUI itself), with only the ``sizes`` (FluxParams size
    fields, e.g. ``DreamOSpec.comfy_flux_params()``) replaced."""
    import comfy.model_detection

    unet_config = comfy.model_detection.detect_unet_config(flux1_key_signature(), "")
    assert unet_config is not None and unet_config.get("image_model") == "flux", unet_config
    unet_config.update(sizes)
    mc = comfy.model_detection.model_config_from_unet_config(unet_config)
    assert mc is not None, "ComfyUI found no model config for a FLUX.1 unet config"
    return mc


def flux_model(sizes: dict, seed: int = 0, dtype: torch.dtype = torch.float32, compute: torch.dtype | None = None,
               device: str | None = None, scale: float = 0.05):
    """A FLUX.1 ModelPatcher of ``sizes`` (``flux_config``) built on ``device`` (None: ComfyUI's default, the
    CPU here): weights ``random_state_dict(seed, scale)`` stored in ``dtype``, computed in ``compute`` (None:
    ComfyUI's choice for ``dtype``)."""
    import comfy.model_patcher

    mc = flux_config(sizes)
    mc.set_inference_dtype(dtype, compute)
    with torch.device(device or "cpu"):
        base = mc.get_model({}, device=device)
    base.load_model_weights(random_state_dict(base.diffusion_model, seed, scale, device, dtype), "")
    if device is not None:
        base.to(device)
    dev = torch.device(device or "cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=dev, offload_device=dev)


def tiny_flux(seed: int = 0, dtype: torch.dtype = torch.float32, compute: torch.dtype | None = None):
    """The node tests' tiny FLUX.1 ModelPatcher (``TINY_SIZES``, CPU)."""
    return flux_model(TINY_SIZES, seed, dtype, compute)


def tiny_vae(seed: int = 0):
    """A 16-channel FLUX-layout VAE with tiny widths (``comfy.sd.VAE``), seeded random weights."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = dict(double_z=True, z_channels=16, resolution=256, in_channels=3, out_ch=3, ch=32,
                    ch_mult=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[], dropout=0.0)
    sd = random_state_dict(AutoencoderKL(embed_dim=16, ddconfig=ddconfig), seed, scale=0.1)  # comfy ops skip init
    return comfy.sd.VAE(sd=sd, config={"params": {"embed_dim": 16, "ddconfig": ddconfig}})
