"""An independent DreamO forward on ComfyUI's tiny Flux submodules: hand-built ids (python loops),
hand-built embeddings (direct table rows), the latent format constants written out. Used as the oracle."""

from __future__ import annotations

import torch
from einops import rearrange

FLUX_SHIFT, FLUX_SCALE = 0.1159, 0.3611  # latent_formats.Flux, written out on purpose


def hand_ids(target: tuple[int, int], refs: list[tuple[int, int]]) -> torch.Tensor:
    """(L, 3) float32 ids: target (0, r, c); ref j at (0, start_r + r, start_c + c), starts advancing per axis."""
    rows = [(0.0, float(r), float(c)) for r in range(target[0]) for c in range(target[1])]
    start_r, start_c = target
    for rh, rw in refs:
        rows += [(0.0, float(start_r + r), float(start_c + c)) for r in range(rh) for c in range(rw)]
        start_r, start_c = start_r + rh, start_c + rw
    return torch.tensor(rows, dtype=torch.float32)


def hand_velocity(dm, x, sigma, ctx, pooled, guidance, refs_raw, indices, task, idx, with_embedding=True,
                  attn_mask=None, img_ids=None):
    """Velocity (B, 16, H, W) of DreamO's forward. refs_raw: raw VAE latents (1, 16, h, w); attn_mask: an
    additive bias on the attention logits given to every block; img_ids: (L_img, 3) ids instead of hand_ids."""
    from comfy.ldm.flux.layers import timestep_embedding

    b, _, hh, ww = x.shape
    target = (hh // 2, ww // 2)
    refs = [((r - FLUX_SHIFT) * FLUX_SCALE).expand(b, -1, -1, -1) for r in refs_raw]
    grids = [(r.shape[-2] // 2, r.shape[-1] // 2) for r in refs]

    def pack(z):
        return rearrange(z, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)

    img = dm.img_in(torch.cat([pack(x), *[pack(r) for r in refs]], dim=1))
    if with_embedding:
        rows = [task[1]] * (target[0] * target[1])
        for k, (gh, gw) in zip(indices, grids):
            rows += [task[0] + idx[k]] * (gh * gw)
        img = img + torch.stack(rows)[None]
    t = torch.full((b,), float(sigma))
    g = torch.full((b,), float(guidance))
    vec = dm.time_in(timestep_embedding(t, 256)) + dm.guidance_in(timestep_embedding(g, 256)) + dm.vector_in(pooled)
    txt = dm.txt_in(ctx)
    img_ids = hand_ids(target, grids) if img_ids is None else img_ids
    ids = torch.cat([torch.zeros(ctx.shape[1], 3), img_ids])[None].expand(b, -1, -1)
    pe = dm.pe_embedder(ids)
    for block in dm.double_blocks:
        img, txt = block(img=img, txt=txt, vec=vec, pe=pe, attn_mask=attn_mask)
    seq = torch.cat([txt, img], dim=1)
    for block in dm.single_blocks:
        seq = block(seq, vec=vec, pe=pe, attn_mask=attn_mask)
    out = dm.final_layer(seq[:, ctx.shape[1]:], vec)[:, : target[0] * target[1]]
    return rearrange(out, "b (h w) (c ph pw) -> b c (h ph) (w pw)", h=target[0], w=target[1], ph=2, pw=2)
