"""DreamO Encode Reference (task, index): one reference image (or a batch) -> VAE latents in a DREAMO_REFS chain."""

from __future__ import annotations

import comfy.utils
import torch
from comfy_api.latest import io

from ..dreamo_core.conditioning.packing import check_vae_latent
from ..dreamo_core.conditioning.reference_images import (
    MAX_REF_RES,
    MIN_REF_RES,
    TASKS,
    EmptyForegroundError,
    prepare_reference,
)
from ..dreamo_core.spec import FLUX_DEV
from .node_names import ENCODE_REFERENCE
from .runtime.references import DreamORefs, DreamORefsType, EncodedReference

NODE = ENCODE_REFERENCE


def masks_per_image(mask: torch.Tensor | None, n_images: int, invert: bool) -> list[torch.Tensor | None]:
    """MASK (H, W) or (B, H, W) -> one foreground mask (H, W) per image (a single mask is shared)."""
    if mask is None:
        return [None] * n_images
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"{NODE}: mask must be a MASK of shape (B, H, W) or (H, W), got a {mask.ndim}-d tensor "
                         f"{tuple(mask.shape)}; an IMAGE or a latent was probably connected: convert an image with "
                         "core's Convert Image to Mask (ImageToMask) first")
    if mask.shape[0] not in (1, n_images):
        raise ValueError(f"{NODE}: mask batch {tuple(mask.shape)} does not match the image batch of {n_images}; "
                         "give one mask for all images or one per image")
    fg = 1.0 - mask if invert else mask
    return [fg[i if fg.shape[0] > 1 else 0] for i in range(n_images)]


def check_image_batch(image: object) -> None:
    """ValueError unless ``image`` is a ComfyUI IMAGE batch (B >= 1, H, W, C)."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{NODE}: image must be an IMAGE batch (B, H, W, C), got {got}")
    if image.shape[0] == 0:
        raise ValueError(f"{NODE}: image: the IMAGE batch is empty (0 images), so there is no reference to encode; "
                         "check the node that makes the images (e.g. an empty folder or a filter that kept nothing)")


def invert_mask_hint(invert: bool) -> str:
    """What to change when the foreground selects nothing, given the ``invert_mask`` setting."""
    if invert:
        return ("invert_mask is on, so the mask was all ones before inversion: turn invert_mask off for a mask where "
                "1 = keep (e.g. a background remover's), or connect another mask")
    return ("invert_mask is off, so 1 = keep: LoadImage's MASK is 1 - alpha (all zeros for an image without "
            "transparency): turn invert_mask on for it, or disconnect the mask")


class EncodeDreamOReference(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DreamO_EncodeReference",
            display_name=NODE,
            category="conditioning/dreamo",
            description=(
                "Prepares a reference image as the official DreamO pipeline (optional foreground mask -> white "
                "background; ip/style: resized to about resolution^2 pixels, sides multiples of 16; id: 512x512 "
                "centre crop) and VAE-encodes it. Chain several nodes through 'references'. A batch of N images "
                "becomes N references with consecutive indices starting at 'index'."
            ),
            inputs=[
                io.Image.Input("image", tooltip="Reference image. A batch of N images gives N references."),
                io.Vae.Input("vae", tooltip="The FLUX VAE (ae.safetensors)."),
                io.Combo.Input("task", options=list(TASKS), default="ip",
                               tooltip="ip: subject/object (try-on: ip on a garment); id: a face (use a face crop); "
                                       "style: style image (start the prompt with 'generate a same style image.')."),
                io.Int.Input("index", default=1, min=1, max=FLUX_DEV.max_refs,
                             tooltip="DreamO reference slot 1-9 (each reference needs its own index; [ref#i] in "
                                     "prompts refers to it). A batch uses index, index+1, ..."),
                io.Int.Input("resolution", default=512, min=MIN_REF_RES, max=MAX_REF_RES, step=16,
                             tooltip="Reference area is about resolution^2 pixels (ip/style; id crops are 512). "
                                     "Higher keeps detail but costs time and editability."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional foreground mask (1 = keep, background becomes white), e.g. from a "
                                      "background remover. One mask, or one per image."),
                io.Boolean.Input("invert_mask", default=False,
                                 tooltip="Invert the mask first. Turn on for LoadImage's MASK output, which is "
                                         "1 - alpha (1 = transparent background)."),
                DreamORefsType.Input("references", optional=True,
                                     tooltip="Earlier references to extend (not changed; a new list is output)."),
            ],
            outputs=[DreamORefsType.Output(display_name="references",
                                           tooltip="The incoming references plus this one, in order.")],
        )

    @classmethod
    def execute(cls, image, vae, task: str, index: int, resolution: int, invert_mask: bool = False,
                mask=None, references: DreamORefs | None = None) -> io.NodeOutput:
        check_image_batch(image)
        masks = masks_per_image(mask, image.shape[0], invert_mask)
        progress = comfy.utils.ProgressBar(image.shape[0])
        new = []
        for i, fg in enumerate(masks):
            try:
                prepared = prepare_reference(image[i], task, resolution, fg, size_name="resolution")
            except EmptyForegroundError as e:
                raise ValueError(f"{NODE}: image {i + 1}: {e}. {invert_mask_hint(invert_mask)}") from e
            except (TypeError, ValueError) as e:
                raise ValueError(f"{NODE}: image {i + 1}: {e}") from e
            latent = vae.encode(prepared.pixels[None])  # (1, 16, h/8, w/8) raw
            try:
                check_vae_latent(tuple(latent.shape), FLUX_DEV.latent_channels)
            except ValueError as e:
                raise ValueError(f"{NODE}: vae: {e}") from e
            new.append(EncodedReference(latent=latent.cpu(), task=task, index=index + i))
            progress.update(1)
        return io.NodeOutput((references or DreamORefs()).added(new, FLUX_DEV.max_refs, NODE))
