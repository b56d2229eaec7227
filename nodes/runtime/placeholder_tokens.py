"""``[ref#i]`` in ComfyUI token lists: CLIP-L keeps the literal text; in the ``t5xxl`` list the T5 pieces of each
placeholder become one embedding entry (DreamO's learned T5 row), which SDClipModel.process_tokens splices in
place of a token embedding (as the official pipeline's added tokens [ref#1]..[ref#9] do)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ...dreamo_core.conditioning.placeholders import MAX_PLACEHOLDER, PLACEHOLDER, placeholder_token

T5XXL_TOKENS = "t5xxl"  # key of the T5-XXL token list in a FLUX clip.tokenize() result


def spaced_placeholders(text: str) -> str:
    """Text with a space on each side of every ``[ref#i]``, so T5 tokenizes it to the same pieces anywhere
    (the official tokenizer treats it as an added token, split from its neighbours)."""
    return PLACEHOLDER.sub(lambda m: f" {m.group(0)} ", text)


def placeholder_pieces(tokenize_batch: Callable[[str], Sequence[tuple]], special: set[int]) -> dict[int, list[int]]:
    """{i: T5 piece ids of "[ref#i]"} for i = 1..9, from one tokenized batch with trailing ``special``
    (end / pad) tokens dropped."""
    out = {}
    for i in range(1, MAX_PLACEHOLDER + 1):
        ids = [t[0] for t in tokenize_batch(placeholder_token(i))]
        while ids and ids[-1] in special:
            ids.pop()
        out[i] = ids
    return out


def replace_placeholder_pieces(batches: Sequence[Sequence[tuple]], pieces: dict[int, list[int]],
                               rows: torch.Tensor, where: str) -> tuple[list[list[tuple]], list[int]]:
    """Token batches [(token, weight[, word_id]), ...] -> new batches where each run of ``pieces[i]`` is one
    ``(rows[i-1] (t5_dim,), weight, word_id)`` entry; also the indices replaced, in order."""
    out, found = [], []
    for batch in batches:
        new, j = [], 0
        while j < len(batch):
            hit = next((i for i, p in pieces.items() if p and [t[0] for t in batch[j : j + len(p)]] == p), None)
            if hit is None:
                new.append(tuple(batch[j]))
                j += 1
                continue
            if hit > rows.shape[0]:
                raise ValueError(f"{where}: no T5 row for [ref#{hit}] ({rows.shape[0]} rows loaded)")
            first = batch[j]
            new.append((rows[hit - 1].to(torch.float32), *first[1:]))
            found.append(hit)
            j += len(pieces[hit])
        out.append(new)
    return out, found
