"""The ``DREAMO_REFS`` value that flows between nodes: an immutable, ordered tuple of encoded references."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..dreamo_core.embeddings import check_reference_indices


@dataclass(frozen=True)
class EncodedReference:
    """One reference. latent: (1, 16, h, w) raw VAE latent (ComfyUI's Flux applies process_latent_in itself);
    index: DreamO slot 1..9; grid: packed token grid (h/2, w/2)."""

    latent: torch.Tensor
    task: str
    index: int

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

    @property
    def indices(self) -> list[int]:
        return [r.index for r in self.refs]

    def __len__(self) -> int:
        return len(self.refs)
