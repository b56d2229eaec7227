"""The trainer's text encoders, each with ``encode(captions, rows) -> (prompt_embeds, pooled, slots)``:
``tiny_hashed`` (hashed words, tests and the toy), ``flux`` (FLUX.1-dev's CLIP-L + T5) and ``cache`` (plain
captions' outputs on disk, in front of either)."""
