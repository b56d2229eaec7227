"""DreamO's conditioning math: condition embeddings, position ids (diagonal and placement boxes), token layout,
reference image preparation, latent packing, per-reference strength and ``[ref#i]`` placeholders."""
