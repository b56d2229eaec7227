"""Image <-> packed latent tokens. ``PixelCodec`` is a fixed linear stand-in for the FLUX VAE (tests: no download,
exact and fast); ``VAECodec`` wraps a diffusers ``AutoencoderKL`` (real training); the toy world's exact codec is
``training.toy.codec.ToyCodec`` (``model.codec: toy``). All map 8 px to one 16-channel latent pixel, as FLUX's VAE."""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from dreamo_core.conditioning.packing import (
    denormalize_latents,
    normalize_latents,
    pack_latents,
    unpack_latents,
)
from dreamo_core.spec import FLUX_DEV


class Codec(Protocol):
    """What the trainer needs of a codec: ``encode`` (B, 3, H, W) in [-1, 1] -> (B, 16, H/8, W/8) model latents
    and ``decode`` back."""

    def encode(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


class PixelCodec:
    """(B, 3, H, W) in [-1, 1] -> 8x average pool -> fixed orthonormal 3 -> 16 channel map (and back)."""

    downscale = 8

    def __init__(self, channels: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.basis = torch.linalg.qr(torch.randn(channels, 3, generator=g))[0] * 2.0  # (16, 3), columns orthogonal

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 16, H/8, W/8)."""
        return torch.einsum("cr,brhw->bchw", self.basis.to(pixels), F.avg_pool2d(pixels, self.downscale))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 16, h, w) -> (B, 3, 8h, 8w) in [-1, 1]."""
        rgb = torch.einsum("cr,bchw->brhw", self.basis.to(z), z) / 4.0
        return F.interpolate(rgb, scale_factor=self.downscale, mode="nearest").clamp(-1, 1)


class VAECodec:
    """FLUX ``AutoencoderKL`` with DreamO's latent normalisation (z - 0.1159) * 0.3611; mean latents."""

    downscale = 8

    def __init__(self, path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        from diffusers import AutoencoderKL

        self.vae = AutoencoderKL.from_pretrained(path, local_files_only=True).to(device, dtype).requires_grad_(False)
        self.vae.eval()
        c = self.vae.config
        if c.latent_channels != 16:
            raise ValueError(f"model.vae_path: {path} has {c.latent_channels} latent channels, FLUX needs 16")
        found = (c.shift_factor, c.scaling_factor)
        if found != (None, None) and found != (FLUX_DEV.latent_shift, FLUX_DEV.latent_scale):
            raise ValueError(f"model.vae_path: {path} has shift/scale {found}, not FLUX's "
                             f"({FLUX_DEV.latent_shift}, {FLUX_DEV.latent_scale})")

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.mean
        return normalize_latents(z, FLUX_DEV.latent_shift, FLUX_DEV.latent_scale).float()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raw = denormalize_latents(z, FLUX_DEV.latent_shift, FLUX_DEV.latent_scale).to(self.vae.dtype)
        return self.vae.decode(raw).sample.float().clamp(-1, 1)


def encode_tokens(codec: Codec, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, 3) in [0, 1] -> packed tokens (B, H/16 * W/16, 64) and the token grid (H/16, W/16)."""
    z = codec.encode(pixels.permute(0, 3, 1, 2) * 2.0 - 1.0)
    return pack_latents(z), (z.shape[2] // 2, z.shape[3] // 2)


def decode_tokens(codec: Codec, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, 64) tokens -> (B, H, W, 3) in [0, 1]."""
    return (codec.decode(unpack_latents(tokens, *grid)).permute(0, 2, 3, 1) + 1.0) / 2.0


def make_codec(kind: str, vae_path: str | None, device: torch.device | str = "cpu") -> Codec:
    """The codec ``model.codec`` names: ``vae`` (``model.vae_path``), ``toy`` or ``pixel``."""
    if kind == "vae":
        return VAECodec(vae_path, device)
    if kind == "toy":
        from .toy.codec import ToyCodec

        return ToyCodec()
    return PixelCodec()
