"""Reference image preparation, as the official ``Generator.pre_condition`` (without its BEN2/face models).

Users bring their own background remover / face crop as a foreground mask: the background becomes white.
Images are (H, W, C) float in [0, 1] (ComfyUI's IMAGE layout without the batch axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F

Task = Literal["ip", "id", "style"]
TASKS: tuple[str, ...] = get_args(Task)  # ip: subject/object (try-on: ip on a garment); id: a face; style
ID_CROP_SIZE = 512  # the official id path always yields a 512x512 aligned face crop, whatever ref_res is
MIN_SIDE = 16
MIN_REF_RES, MAX_REF_RES = 64, 2048  # 64: small enough for the toy world's 96-px references (training/toy/constants.py)
MAX_SIDE = 16384
EMPTY_FOREGROUND = 1.0 / 255.0  # a foreground whose largest value is below one 8-bit step selects nothing


class EmptyForegroundError(ValueError):
    """The foreground mask (or alpha) keeps no pixel, so the whole reference would become white."""


@dataclass(frozen=True)
class PreparedReference:
    """A reference ready for the VAE. pixels: (h, w, 3) in [0, 1], h and w multiples of 16."""

    pixels: torch.Tensor
    task: str

    @property
    def token_grid(self) -> tuple[int, int]:
        return (self.pixels.shape[0] // 16, self.pixels.shape[1] // 16)


def area_resize_size(h: int, w: int, ref_res: int, multiple: int = 16, size_name: str = "ref_res") -> tuple[int, int]:
    """Official ``resize_numpy_image_area`` size: scale to about ref_res**2 pixels, keep the aspect ratio,
    floor each side to a multiple of 16. Raises if a side would vanish (extreme aspect ratio); the message calls
    ref_res ``size_name`` (the caller's name for it, e.g. the node input ``resolution``)."""
    k = math.sqrt(ref_res * ref_res / (h * w))
    nh, nw = int(h * k), int(w * k)
    nh, nw = nh - nh % multiple, nw - nw % multiple
    if nh < multiple or nw < multiple:
        raise ValueError(
            f"reference image {w}x{h} (w x h) has an aspect ratio too extreme for {size_name}={ref_res}: "
            f"it would become {nw}x{nh}; crop it or raise {size_name}"
        )
    return nh, nw


def to_rgb(image: torch.Tensor, name: str = "image") -> tuple[torch.Tensor, torch.Tensor | None]:
    """(H, W), (H, W, 1|3|4) in [0, 1] -> ((H, W, 3) float32, alpha (H, W) or None). Rejects anything else."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (H, W, C) in [0, 1], got {type(image).__name__}")
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    if not image.is_floating_point():
        raise ValueError(f"{name}: expected float pixels in [0, 1] or uint8, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected shape (H, W, C) with C in 1, 3 or 4 (gray, RGB, RGBA), got {tuple(image.shape)}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"{name}: {w}x{h} is too small; a reference needs at least {MIN_SIDE} pixels per side")
    if max(h, w) > MAX_SIDE:
        raise ValueError(f"{name}: {w}x{h} is too large; downscale it below {MAX_SIDE} pixels per side first")
    if not torch.isfinite(image).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    image = image.float().clamp(0.0, 1.0)
    alpha = image[..., 3] if image.shape[-1] == 4 else None
    rgb = image[..., :3] if image.shape[-1] >= 3 else image.expand(h, w, 3)
    return rgb, alpha


def composite_on_white(rgb: torch.Tensor, foreground: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """(H, W, 3) and foreground (H, W) in [0, 1] (1 = keep) -> (H, W, 3) with the background white.
    EmptyForegroundError when no value reaches 1/255 (everything would be white)."""
    if foreground.ndim == 3 and foreground.shape[0] == 1:
        foreground = foreground[0]
    if foreground.ndim != 2:
        raise ValueError(f"{name}: expected a (H, W) foreground mask, got shape {tuple(foreground.shape)}")
    if not torch.isfinite(foreground.float()).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    largest = float(foreground.float().max()) if foreground.numel() else 0.0
    if largest < EMPTY_FOREGROUND:
        raise EmptyForegroundError(
            f"{name} selects nothing (largest value {largest:g}; 1 = keep), so the whole reference would be white")
    if foreground.shape != rgb.shape[:2]:
        foreground = F.interpolate(foreground[None, None].float(), size=rgb.shape[:2], mode="bilinear",
                                   align_corners=False)[0, 0]
    m = foreground.float().clamp(0.0, 1.0)[..., None]
    return rgb * m + (1.0 - m)


def resize_area(rgb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W, 3) -> (h, w, 3): area averaging when shrinking (cv2 INTER_AREA), bilinear when enlarging."""
    if tuple(rgb.shape[:2]) == tuple(size):
        return rgb
    x = rgb.permute(2, 0, 1)[None]
    shrink = size[0] <= rgb.shape[0] and size[1] <= rgb.shape[1]
    if shrink:
        x = F.interpolate(x, size=size, mode="area")
    else:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x[0].permute(1, 2, 0).clamp(0.0, 1.0)


def center_square(rgb: torch.Tensor) -> torch.Tensor:
    """(H, W, C) -> the centred (S, S, C) crop, S = min(H, W)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return rgb[top : top + s, left : left + s]


def prepare_reference(
    image: torch.Tensor, task: str = "ip", ref_res: int = 512, mask: torch.Tensor | None = None,
    size_name: str = "ref_res",
) -> PreparedReference:
    """One reference image -> pixels ready for the VAE, as the official preprocessing.

    image: (H, W, C) in [0, 1], C in {1, 3, 4}; RGBA alpha is used as the foreground when no mask is given.
    task: "ip" / "style": area resize to ~ref_res**2 (sides multiples of 16); "id": a 512x512 crop
    (centre square, ref_res ignored, as the official id path). mask: optional (H, W) foreground in [0, 1].
    A mask (or alpha) that keeps no pixel raises EmptyForegroundError (a ValueError). Messages call ref_res
    ``size_name`` (the caller's name for it).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)} (try-on is 'ip' on a garment), got {task!r}")
    if not isinstance(ref_res, int) or ref_res < MIN_REF_RES or ref_res > MAX_REF_RES or ref_res % 16:
        raise ValueError(f"{size_name} must be a multiple of 16 between {MIN_REF_RES} and {MAX_REF_RES}, got {ref_res!r}")
    rgb, alpha = to_rgb(image)
    if mask is not None:
        rgb = composite_on_white(rgb, mask, "mask")
    elif alpha is not None:
        rgb = composite_on_white(rgb, alpha, "image alpha channel")
    if task == "id":
        pixels = resize_area(center_square(rgb), (ID_CROP_SIZE, ID_CROP_SIZE))
    else:
        pixels = resize_area(rgb, area_resize_size(rgb.shape[0], rgb.shape[1], ref_res, size_name=size_name))
    return PreparedReference(pixels=pixels.contiguous(), task=task)


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """(h, w, 3) in [0, 1] -> (1, 3, h, w) in [-1, 1], the diffusers VAE input."""
    return (pixels.permute(2, 0, 1)[None] * 2.0 - 1.0).contiguous()
