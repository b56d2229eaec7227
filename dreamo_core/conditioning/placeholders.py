"""``[ref#i]`` placeholders in prompts: parsing and validation."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..spec import FLUX_DEV

PLACEHOLDER = re.compile(r"\[ref#(\d+)\]")  # the one pattern of a well-formed placeholder; group 1: its index
LOOSE_PLACEHOLDER = re.compile(r"\[\s*ref\s*(?:#|\d)[^\]]*\]", re.IGNORECASE)  # "ref" then "#" or a digit
MAX_PLACEHOLDER = FLUX_DEV.max_refs  # [ref#1]..[ref#9]: one per usable reference index


def placeholder_token(index: int) -> str:
    return f"[ref#{index}]"


def placeholder_index(word: str) -> int | None:
    """The index i of a word that is exactly ``[ref#i]``, else None."""
    m = PLACEHOLDER.fullmatch(word)
    return int(m.group(1)) if m else None


T5_PLACEHOLDER_TOKENS = tuple(placeholder_token(i) for i in range(1, MAX_PLACEHOLDER + 1)) + ("[res]",)  # T5 ids 32100..32109


@dataclass(frozen=True)
class Placeholder:
    index: int  # 1-based reference index
    start: int  # character span in the prompt
    end: int


def find_placeholders(prompt: str) -> list[Placeholder]:
    """Every well-formed ``[ref#i]`` in order. Malformed ones (``[ref #1]``, ``[ref#x]``, ``[ref#01]``) raise
    ValueError."""
    for m in PLACEHOLDER.finditer(prompt):
        if m.group(1) != str(int(m.group(1))):
            raise ValueError(f"prompt: write {placeholder_token(int(m.group(1)))}, not {m.group(0)}: a placeholder's "
                             "index has no leading zeros")
    found = [Placeholder(int(m.group(1)), m.start(), m.end()) for m in PLACEHOLDER.finditer(prompt)]
    exact = {(p.start, p.end) for p in found}
    for m in LOOSE_PLACEHOLDER.finditer(prompt):
        if (m.start(), m.end()) not in exact:
            raise ValueError(f"prompt: malformed placeholder {m.group(0)!r}; write it exactly as [ref#1] ... [ref#9]")
    return found


def validate_placeholders(prompt: str, available: Iterable[int]) -> list[Placeholder]:
    """Parse and check placeholders against the indices that have a reference.

    Raises ValueError for an index outside 1..9 or one with no reference attached."""
    avail = sorted(set(available))
    found = find_placeholders(prompt)
    for p in found:
        if not 1 <= p.index <= MAX_PLACEHOLDER:
            raise ValueError(f"prompt: [ref#{p.index}] is out of range; DreamO has placeholders [ref#1] to [ref#{MAX_PLACEHOLDER}]")
        if p.index not in avail:
            have = ", ".join(f"[ref#{i}]" for i in avail) or "none (no references attached)"
            raise ValueError(f"prompt: [ref#{p.index}] has no reference with index {p.index}; available: {have}")
    return found


def add_t5_placeholder_tokens(tokenizer, text_encoder) -> int:
    """Official ``_prepare_t5`` token set-up: shrink T5's table to the tokenizer, add ``[ref#1..9]``, ``[res]``,
    grow the table by 10 rows. Returns the id of ``[ref#1]`` (``len(tokenizer) - 10``); raises if they already existed."""
    text_encoder.resize_token_embeddings(len(tokenizer))
    tokenizer.add_tokens(list(T5_PLACEHOLDER_TOKENS), special_tokens=False)
    text_encoder.resize_token_embeddings(len(tokenizer))
    first = int(tokenizer.convert_tokens_to_ids(T5_PLACEHOLDER_TOKENS[0]))
    if first != len(tokenizer) - len(T5_PLACEHOLDER_TOKENS):
        raise ValueError(f"tokenizer_2: {T5_PLACEHOLDER_TOKENS[0]} got id {first}, expected "
                         f"{len(tokenizer) - len(T5_PLACEHOLDER_TOKENS)} (placeholders already in the vocabulary?)")
    return first
