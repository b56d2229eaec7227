"""DreamO's condition embeddings, added to the image tokens right after ``x_embedder`` / ``img_in``.

Target tokens get ``task[1]``; tokens of the reference with 1-based index k get ``task[0] + idx[k]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..spec import FLUX_DEV, DreamOSpec

TARGET_ROW = 1
CONDITION_ROW = 0
TABLE_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)  # float8 & co.: no add kernels


@dataclass(frozen=True)
class ConditionEmbeddings:
    """The two learned tables. task: (num_task_rows, D) (2, 3072); idx: (num_idx_rows, D) (10, 3072)."""

    task: torch.Tensor
    idx: torch.Tensor

    def validate(self, spec: DreamOSpec = FLUX_DEV, source: str = "embeddings") -> ConditionEmbeddings:
        """Raise ValueError naming ``source`` unless both tables have the spec's shapes."""
        want_task = (spec.num_task_rows, spec.hidden_size)
        want_idx = (spec.num_idx_rows, spec.hidden_size)
        for name, t, want in (("dreamo_task_embedding", self.task, want_task), ("dreamo_idx_embedding", self.idx, want_idx)):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != want:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{source}: {name} has shape {got}, expected {want}")
            if not t.is_floating_point():
                raise ValueError(f"{source}: {name} must be floating point, got {t.dtype}")
            if t.dtype not in TABLE_DTYPES:
                raise ValueError(f"{source}: {name} is stored as {str(t.dtype).removeprefix('torch.')}; DreamO's "
                                 "tables must be 16-, 32- or 64-bit floats (the sum task[0] + idx[k] is not defined "
                                 "in 8-bit floats, and the 12 rows gain nothing from them): use the official "
                                 "embedding.safetensors, or convert the file's dreamo_* tables to bfloat16")
        return self

    @property
    def hidden_size(self) -> int:
        return int(self.task.shape[1])

    @property
    def max_index(self) -> int:
        return int(self.idx.shape[0]) - 1

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ConditionEmbeddings:
        return ConditionEmbeddings(self.task.to(device=device, dtype=dtype), self.idx.to(device=device, dtype=dtype))


def check_reference_indices(indices: Sequence[int], max_index: int, where: str = "references") -> None:
    """Raise ValueError unless every index is an int in 1..max_index and none repeats."""
    seen: set[int] = set()
    for k in indices:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= max_index:
            raise ValueError(f"{where}: reference index {k!r} is out of range; DreamO supports indices 1-{max_index}")
        if k in seen:
            raise ValueError(f"{where}: reference index {k} is used twice; each reference needs its own index")
        seen.add(k)


def condition_embedding_rows(tables: ConditionEmbeddings, indices: Sequence[int]) -> torch.Tensor:
    """(1 + n_refs, D): row 0 is the target's ``task[1]``, row j is ``task[0] + idx[indices[j-1]]``."""
    check_reference_indices(indices, tables.max_index)
    rows = [tables.task[TARGET_ROW]]
    rows += [tables.task[CONDITION_ROW] + tables.idx[k] for k in indices]
    return torch.stack(rows)


def build_condition_embeddings(
    tables: ConditionEmbeddings, target_tokens: int, ref_tokens: Sequence[int], indices: Sequence[int]
) -> torch.Tensor:
    """(target_tokens + sum(ref_tokens), D) embedding for the sequence ``[target | ref1 | ref2 ...]``."""
    if len(ref_tokens) != len(indices):
        raise ValueError(f"build_condition_embeddings: {len(ref_tokens)} token counts but {len(indices)} indices")
    if target_tokens < 0 or any(n < 0 for n in ref_tokens):
        raise ValueError(
            f"build_condition_embeddings: token counts must be non-negative, got target {target_tokens}, refs {list(ref_tokens)}"
        )
    rows = condition_embedding_rows(tables, indices)  # (1 + n_refs, D)
    counts = [target_tokens, *ref_tokens]  # Python ints: static shapes, no data-dependent op (torch.compile)
    return torch.cat([rows[j].expand(n, -1) for j, n in enumerate(counts)], dim=0)


def batched_condition_embeddings(
    tables: ConditionEmbeddings,
    target_tokens: int,
    ref_tokens: Sequence[int],
    item_indices: Sequence[Sequence[int] | None],
) -> torch.Tensor:
    """(B, L, D) with L = target_tokens + sum(ref_tokens): for batch item b the DreamO embedding of references with
    DreamO indices ``item_indices[b]``, exact zeros where it is None (a batch may mix prompts with and without
    DreamO, e.g. a sampler's positive and negative, or prompts with their own references, e.g. regions). Computed
    in the tables' dtype and on their device, as the official code; only static-shape ops (one build per
    distinct index list)."""
    built: dict[tuple[int, ...], torch.Tensor] = {}
    for indices in item_indices:
        if indices is not None and tuple(indices) not in built:
            built[tuple(indices)] = build_condition_embeddings(tables, target_tokens, ref_tokens, indices)  # (L, D)
    if len(built) == 1 and all(i is not None for i in item_indices):
        return next(iter(built.values()))[None].expand(len(item_indices), -1, -1)
    zeros = torch.zeros(target_tokens + sum(ref_tokens), tables.hidden_size, dtype=tables.task.dtype,
                        device=tables.task.device)
    return torch.stack([zeros if i is None else built[tuple(i)] for i in item_indices])


def add_condition_embedding(tokens: torch.Tensor, emb: torch.Tensor, where: str = "DreamO") -> torch.Tensor:
    """``tokens`` (B, L, D) after the image input projection + ``emb`` ((L, D) or (B, L, D)), cast to the tokens'
    device and dtype. ValueError naming ``where`` when the token count or the width differ (another node changed
    the tokens, or embeddings from another model)."""
    if tokens.shape[-2] != emb.shape[-2]:
        raise ValueError(f"{where}: the model saw {tokens.shape[-2]} image tokens, but the DreamO condition embedding "
                         f"covers {emb.shape[-2]}; another node changed the image or reference tokens")
    if tokens.shape[-1] != emb.shape[-1]:
        raise ValueError(f"{where}: condition embedding width {emb.shape[-1]} does not match the model width "
                         f"{tokens.shape[-1]} (embeddings from another model?)")
    return tokens + emb.to(device=tokens.device, dtype=tokens.dtype)
