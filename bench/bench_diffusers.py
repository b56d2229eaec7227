"""Step time / peak memory of the diffusers DreamO forward vs the plain FLUX forward, in ONE run.

    python -m bench.bench_diffusers                 # CPU, small model, quick grid
    python -m bench.bench_diffusers --size full --device cuda --dtype bf16 --grid full   # on a GPU

Prints, per output size / reference count / reference resolution: time ratio DreamO/plain (plain and DreamO timed
interleaved, median of the per-round ratios), the FLOPs-floor ratio from token counts (bench.flops) and the
excess of the measured ratio over the floor, and the overhead over the plain model run at DreamO's token count
(what our implementation adds beyond "more tokens"). ``--size width`` is FLUX.1-dev's width with 2 + 2 blocks (CPU-sized).
"""

from __future__ import annotations

import sys
import time
from functools import partial

import torch

from bench.common import (
    BENCH_DTYPE_BY_NAME,
    HEADER,
    SIZES,
    build_transformer,
    forward_bench_arguments,
    interleaved,
    overhead_cells,
    overhead_row,
    print_table,
    profile_delta,
    same_token_grid,
    timed,
)
from bench.flops import floor_ratio
from dreamo_core.conditioning.position_ids import dreamo_position_ids
from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward
from dreamo_core.generator.tiny import tiny_tables
from dreamo_core.spec import DreamOSpec

GRIDS = {
    "quick": [(512, n, 512) for n in (0, 1, 2, 4, 9)] + [(768, 1, 768), (1024, 1, 1024)],
    "width": [(512, 0, 512), (512, 1, 512), (512, 4, 512), (512, 9, 512), (1024, 1, 1024)],  # CPU at FLUX width
    "full": [(out, n, rr) for out in (512, 768, 1024) for n in (0, 1, 2, 4, 9) for rr in (512, 768, 1024)
             if n > 0 or rr == 512],
    "gpu-suite": [(1024, n, 512) for n in (0, 1, 2, 4)],  # bench.gpu_suite's overhead section
    "tiny": [(128, n, 64) for n in (0, 1, 2, 4)],  # the same at the tiny size (its CPU test)
}


def run(size: str, device: str, dtype: torch.dtype, grid: str, repeat: int, text_tokens: int,
        profile: bool = False, deadline: float | None = None) -> list[dict]:
    """Measure every grid point (``common.overhead_row`` each), print the table and return the rows; no grid point
    starts after ``deadline`` (``time.monotonic()``)."""
    model = build_transformer(size, device, dtype)
    c = model.config
    spec = DreamOSpec.of_diffusers_config(c)
    px, channels = spec.token_pixels, spec.packed_channels
    tables = tiny_tables(spec).to(device, dtype)
    g = torch.Generator().manual_seed(0)
    embeds = torch.randn(1, text_tokens, c.joint_attention_dim, generator=g).to(device, dtype)
    pooled = torch.randn(1, c.pooled_projection_dim, generator=g).to(device, dtype)
    sigma = torch.full((1,), 0.5, device=device, dtype=dtype)
    guidance = torch.full((1,), 3.5, device=device)
    rows = []

    def plain_forward(grid_t: tuple[int, int]):
        latents = torch.randn(1, grid_t[0] * grid_t[1], channels, generator=g).to(device, dtype)
        return partial(model, hidden_states=latents, timestep=sigma, guidance=guidance, pooled_projections=pooled,
                       encoder_hidden_states=embeds, txt_ids=torch.zeros(text_tokens, 3, device=device, dtype=dtype),
                       img_ids=dreamo_position_ids(grid_t, [], dtype).to(device), return_dict=False)

    for out, n_refs, ref_res in GRIDS[grid]:
        if deadline is not None and time.monotonic() > deadline:
            break
        grid_t = (out // px, out // px)
        latents = torch.randn(1, grid_t[0] * grid_t[1], channels, generator=g).to(device, dtype)
        refs = [ReferenceTokens(torch.randn(1, (ref_res // px) ** 2, channels, generator=g).to(device, dtype),
                                (ref_res // px, ref_res // px), k + 1) for k in range(n_refs)]
        ref_tokens = [r.tokens.shape[1] for r in refs]
        dreamo = partial(dreamo_transformer_forward, model, latents, grid_t, refs, sigma, guidance, pooled, embeds, tables)
        fns = [plain_forward(grid_t), dreamo, plain_forward(same_token_grid(grid_t[0] * grid_t[1] + sum(ref_tokens)))]
        floor = floor_ratio(grid_t[0] * grid_t[1], ref_tokens, text_tokens, spec)
        rows.append(overhead_row(out, n_refs, ref_res, *interleaved([timed(f, device) for f in fns], repeat), floor))
        print(f"  measured {out}² / {n_refs} refs / {ref_res}", file=sys.stderr, flush=True)
        if profile and n_refs == 1:
            with torch.no_grad():
                profile_delta({"same-token plain": fns[2], "DreamO": dreamo}, "same-token plain", "DreamO", steps=2)
            profile = False
    print_table(f"diffusers DreamO forward vs plain FLUX ({size}, {device}, {dtype}, {text_tokens} text tokens)",
                HEADER, [overhead_cells(r) for r in rows])
    return rows


def main(argv: list[str] | None = None) -> None:
    p = forward_bench_arguments(__doc__, sorted(SIZES), sorted(GRIDS))
    p.add_argument("--profile", action="store_true", help="per-op time of DreamO minus same-token plain (first 1-ref row)")
    a = p.parse_args(argv)
    run(a.size, a.device, BENCH_DTYPE_BY_NAME[a.dtype], a.grid, a.repeat, a.text_tokens, a.profile)


if __name__ == "__main__":
    main()
