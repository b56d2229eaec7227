"""Latent packing: 2x2 latent patches <-> tokens, exactly as FLUX/diffusers ``_pack_latents``."""

from __future__ import annotations

import torch
from einops import rearrange


def pack_latents(z: torch.Tensor, patch_size: int = 2) -> torch.Tensor:
    """(B, C, H, W) latents -> (B, H/p * W/p, C*p*p) tokens, row-major over the token grid."""
    if z.ndim != 4:
        raise ValueError(f"pack_latents expects (B, C, H, W) latents, got shape {tuple(z.shape)}")
    _, _, h, w = z.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"pack_latents: latent size {h}x{w} is not a multiple of the patch size {patch_size}")
    return rearrange(z, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=patch_size, pw=patch_size)


def unpack_latents(tokens: torch.Tensor, h: int, w: int, patch_size: int = 2) -> torch.Tensor:
    """(B, h*w, C*p*p) tokens on an h x w token grid -> (B, C, h*p, w*p) latents."""
    if tokens.ndim != 3 or tokens.shape[1] != h * w:
        raise ValueError(f"unpack_latents: expected (B, {h * w}, C) tokens for a {h}x{w} grid, got {tuple(tokens.shape)}")
    if tokens.shape[2] % (patch_size * patch_size):
        raise ValueError(f"unpack_latents: tokens have {tokens.shape[2]} channels, expected a multiple of {patch_size * patch_size}")
    return rearrange(tokens, "b (h w) (c ph pw) -> b c (h ph) (w pw)", h=h, w=w, ph=patch_size, pw=patch_size)


def normalize_latents(z: torch.Tensor, shift: float, scale: float) -> torch.Tensor:
    """Raw VAE latents -> model latents: (z - shift) * scale (FLUX: 0.1159, 0.3611)."""
    return (z - shift) * scale


def denormalize_latents(z: torch.Tensor, shift: float, scale: float) -> torch.Tensor:
    """Model latents -> raw VAE latents: z / scale + shift."""
    return z / scale + shift


def check_vae_latent(shape: tuple[int, ...], latent_channels: int = 16) -> None:
    """ValueError unless ``shape`` is an image latent (B, latent_channels, h, w) (FLUX.1's VAE: 16 channels).
    A 4-channel latent comes from an SD1.x/SDXL VAE, a 5-D one from a video VAE."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise ValueError(f"the VAE gives latents of shape {shape}, expected an image latent (B, {latent_channels}, h, w) "
                         "(a video or audio VAE?); use the FLUX VAE (ae.safetensors)")
    if shape[1] != latent_channels:
        hint = " (an SD1.x/SDXL VAE)" if shape[1] == 4 else ""
        raise ValueError(f"the VAE gives {shape[1]}-channel latents{hint}, FLUX.1 needs {latent_channels}; "
                         "use the FLUX VAE (ae.safetensors)")
