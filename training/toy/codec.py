"""The toy world's codec (``ToyCodec``, exact on toy images; the trainer's ``model.codec: toy``) and the same codec
behind the diffusers ``AutoencoderKL`` interface (``ToyVAE``) that the ``dreamo`` generator and ComfyUI's VAE
stand-in call."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from dreamo_core.conditioning.packing import denormalize_latents, normalize_latents
from dreamo_core.spec import FLUX_DEV

from .constants import UPSCALE


class ToyCodec:
    """The toy world's codec: exact on its images, 16 channels, 8x downscale, 2x2 latent pixels per 64-d token.

    A toy file repeats each native pixel 4x4 (``constants.UPSCALE``), so a latent pixel's 8x8 px are 2x2
    native pixels: 12 numbers, mapped by a fixed (16, 12) matrix with orthogonal columns (norm ``scale``) to 16
    channels. Decoding is the transpose, then the 4x repetition: ``decode(encode(x)) == x`` for toy images, and for
    any image it is the 4x4 block mean. A token (2x2 latent pixels) holds 4x4 native pixels (48 of its 64 numbers).
    """

    downscale = 8
    block = UPSCALE  # image pixels per native pixel (the 4x repetition of the files)
    scale = 1.6  # column norm: latents of toy scenes have a standard deviation near 0.8

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.basis = torch.linalg.qr(torch.randn(16, 12, generator=g))[0] * self.scale  # (16, 12)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 16, H/8, W/8)."""
        native = F.avg_pool2d(pixels, self.block)  # (B, 3, H/4, W/4)
        return torch.einsum("cr,brhw->bchw", self.basis.to(pixels), F.pixel_unshuffle(native, 2))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 16, h, w) -> (B, 3, 8h, 8w) in [-1, 1]."""
        blocks = torch.einsum("cr,bchw->brhw", self.basis.to(z), z) / self.scale**2  # (B, 12, h, w)
        native = F.pixel_shuffle(blocks, 2)  # (B, 3, 2h, 2w)
        return F.interpolate(native, scale_factor=self.block, mode="nearest").clamp(-1, 1)


@dataclass
class LatentDist:
    latents: torch.Tensor

    def mode(self) -> torch.Tensor:
        return self.latents


class ToyVAE(torch.nn.Module):
    """``ToyCodec`` as a diffusers ``AutoencoderKL``: ``encode(x).latent_dist.mode()`` gives *raw* latents
    (z / 0.3611 + 0.1159), ``decode(raw)`` undoes that; ``config.shift_factor`` / ``scaling_factor`` are FLUX's, so
    the generator's normalisation maps raw latents back to exactly the toy's model latents (and ComfyUI's FLUX
    latent format does the same)."""

    def __init__(self, codec: ToyCodec | None = None):
        super().__init__()
        self.codec = codec or ToyCodec()
        self.config = SimpleNamespace(shift_factor=FLUX_DEV.latent_shift, scaling_factor=FLUX_DEV.latent_scale)
        self.register_buffer("anchor", torch.zeros(()))  # gives the module a dtype / device

    @property
    def dtype(self) -> torch.dtype:
        return self.anchor.dtype

    def encode(self, x: torch.Tensor) -> SimpleNamespace:
        """(B, 3, H, W) in [-1, 1] -> .latent_dist.mode() (B, 16, H/8, W/8) raw latents."""
        z = self.codec.encode(x.float())
        return SimpleNamespace(latent_dist=LatentDist(denormalize_latents(z, self.config.shift_factor,
                                                                          self.config.scaling_factor)))

    def decode(self, raw: torch.Tensor, return_dict: bool = False) -> tuple[torch.Tensor]:
        """(B, 16, h, w) raw latents -> ((B, 3, 8h, 8w) in [-1, 1],)."""
        z = normalize_latents(raw.float(), self.config.shift_factor, self.config.scaling_factor)
        return (self.codec.decode(z),)
