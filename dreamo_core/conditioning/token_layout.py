"""Where each reference's tokens sit in DreamO's joint sequence ``[target | ref1 | ref2 ...]`` (after the text
in an attention call): one span per reference, consecutive."""

from __future__ import annotations

from collections.abc import Sequence

TokenGrid = tuple[int, int]  # (rows, cols) of a packed token grid


def reference_spans(start: int, ref_tokens: Sequence[int]) -> list[tuple[int, int]]:
    """[(s_k, e_k)] half-open spans of consecutive references of ``ref_tokens`` tokens each, the first at ``start``
    (the target's token count in the image sequence, or text + target tokens in an attention call)."""
    spans = []
    for n in ref_tokens:
        if n < 0:
            raise ValueError(f"reference_spans: token counts must be non-negative, got {list(ref_tokens)}")
        spans.append((start, start + n))
        start += n
    return spans
