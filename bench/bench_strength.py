"""What a reference strength other than 1 costs: the additive attention bias (a mask) vs the mask-free forward.

    python -m bench.bench_strength --size width --dtype bf16 --grid quick   # CPU at FLUX.1-dev width
    python -m bench.bench_strength --size full --device cuda --dtype bf16    # on a GPU

Strength 1 over the whole schedule adds no mask (bit-identical to plain DreamO); any other strength, or a step
range, gives every attention call a (B, 1, 1, L) float bias, which keeps SDPA off its flash kernels on GPUs.
ComfyUI's Flux ``attn1_patch`` (0.17+) also hands over q, k, v and the mask only, so it offers no mask-free way to
add a per-key logit bias. Prints the step-time ratio strength 0.5 / strength 1, timed interleaved in one run.
"""

from __future__ import annotations

import sys
from functools import partial

import torch

from bench.common import (
    BENCH_DTYPE_BY_NAME,
    SIZES,
    build_transformer,
    forward_bench_arguments,
    interleaved,
    print_table,
    timed,
)
from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward
from dreamo_core.generator.tiny import tiny_tables
from dreamo_core.spec import DreamOSpec

GRIDS = {"one": [(256, 1, 256)], "quick": [(256, 1, 256), (512, 1, 512)], "full": [(1024, 1, 512), (1024, 2, 512), (1024, 1, 1024)]}


def main(argv: list[str] | None = None) -> int:
    p = forward_bench_arguments(__doc__, list(SIZES), list(GRIDS))
    a = p.parse_args(argv)
    dtype = BENCH_DTYPE_BY_NAME[a.dtype]
    model = build_transformer(a.size, a.device, dtype)
    spec = DreamOSpec.of_diffusers_config(model.config)
    tables = tiny_tables(spec).to(a.device, dtype)
    g = torch.Generator().manual_seed(0)
    c = model.config
    embeds = torch.randn(1, a.text_tokens, c.joint_attention_dim, generator=g).to(a.device, dtype)
    pooled = torch.randn(1, c.pooled_projection_dim, generator=g).to(a.device, dtype)
    sigma = torch.full((1,), 0.5, device=a.device, dtype=dtype)
    guidance = torch.full((1,), 3.5, device=a.device)
    rows = []
    px, channels = spec.token_pixels, spec.packed_channels
    for out, n_refs, ref_res in GRIDS[a.grid]:
        grid, rgrid = (out // px, out // px), (ref_res // px, ref_res // px)
        latents = torch.randn(1, grid[0] * grid[1], channels, generator=g).to(a.device, dtype)
        refs = [ReferenceTokens(torch.randn(1, rgrid[0] * rgrid[1], channels, generator=g).to(a.device, dtype),
                                rgrid, k + 1) for k in range(n_refs)]
        call = partial(dreamo_transformer_forward, model, latents, grid, refs, sigma, guidance, pooled, embeds, tables)
        times, ratios, _ = interleaved([timed(partial(call, strengths=[1.0] * n_refs), a.device),
                                        timed(partial(call, strengths=[0.5] * n_refs), a.device)], a.repeat)
        rows.append([str(out), str(n_refs), str(ref_res), f"{times[0] * 1e3:.0f}", f"{times[1] * 1e3:.0f}",
                     f"{ratios[1]:.3f}"])
    print_table(f"strength 0.5 vs 1 ({a.size}, {a.dtype}, {a.device})",
                ["output", "refs", "ref res", "strength 1 ms", "strength 0.5 ms", "ratio"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
