"""The ``DREAMO_REFS`` value that flows between nodes (an immutable, ordered tuple of encoded references) and its
socket type."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from comfy_api.latest import io

from ...dreamo_core.conditioning.embeddings import check_reference_indices
from ...dreamo_core.conditioning.placement import Box
from ...dreamo_core.conditioning.reference_strength import DEFAULT_REFERENCE_OPTIONS

DreamORefsType = io.Custom("DREAMO_REFS")  # the value: a DreamORefs


@dataclass(frozen=True)
class EncodedReference:
    """One reference. latent: (1, 16, h, w) raw VAE latent (ComfyUI's Flux applies process_latent_in itself);
    index: DreamO slot 1..9; grid: packed token grid (h/2, w/2). Controls (DreamO Reference Options):
    strength w (attention bias log w on its keys), active between start_percent and end_percent of the
    schedule, and an optional placement box (None = DreamO's diagonal position ids)."""

    latent: torch.Tensor
    task: str
    index: int
    strength: float = DEFAULT_REFERENCE_OPTIONS.strength
    start_percent: float = DEFAULT_REFERENCE_OPTIONS.start_percent
    end_percent: float = DEFAULT_REFERENCE_OPTIONS.end_percent
    box: Box | None = DEFAULT_REFERENCE_OPTIONS.box

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.latent.shape[-2:]
        return (-(-h // 2), -(-w // 2))


@dataclass(frozen=True)
class DreamORefs:
    """Ordered references; ``added`` returns a new value and never changes this one."""

    refs: tuple[EncodedReference, ...] = ()

    def added(self, new: list[EncodedReference], max_index: int, where: str) -> DreamORefs:
        out = DreamORefs(self.refs + tuple(new))
        if len(out.refs) > max_index:
            raise ValueError(f"{where}: {len(out.refs)} references, but DreamO has only {max_index} reference indices")
        check_reference_indices(out.indices, max_index, where)
        return out

    def with_options(self, index: int, where: str, **options: object) -> DreamORefs:
        """A new value whose reference with DreamO ``index`` has ``options`` replaced; ValueError if absent."""
        if index not in self.indices:
            raise ValueError(f"{where}: no reference with index {index}; the connected references have indices "
                             f"{self.indices or 'none'}")
        return DreamORefs(tuple(replace(r, **options) if r.index == index else r for r in self.refs))

    @property
    def indices(self) -> list[int]:
        return [r.index for r in self.refs]

    def __len__(self) -> int:
        return len(self.refs)
