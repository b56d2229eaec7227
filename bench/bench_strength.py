"""What a reference strength other than 1 costs: the additive attention bias (a mask) vs the mask-free forward,
and whether a mask-free strength (``bench.key_split_attention``) would pay off.

    python -m bench.bench_strength --size width --dtype bf16 --grid quick   # CPU at FLUX.1-dev width
    python -m bench.bench_strength --size full --device cuda --dtype bf16    # on a GPU

Strength 1 over the whole schedule adds no mask (bit-identical to plain DreamO); any other strength, or a step
range, gives every attention call a (B, 1, 1, L) float bias, which keeps SDPA off its flash kernels on GPUs.
ComfyUI's Flux ``attn1_patch`` (0.17+) also hands over q, k, v and the mask only, so it offers no mask-free way to
add a per-key logit bias. Prints the step-time ratio strength 0.5 / strength 1, timed interleaved in one run, and
per grid point one attention call over the step's joint sequence at the size's heads: unmasked (strength 1),
with the bias as SDPA's mask (strength 0.5), and split at the reference keys into unmasked flash calls merged by
their log-sum-exps (the same function, max |diff| printed), with the step time the split would give
(strength-1 step + blocks x (split - unmasked call)).
"""

from __future__ import annotations

import sys
import time
from functools import partial

import torch
import torch.nn.functional as F

from bench.common import (
    BENCH_DTYPE_BY_NAME,
    SIZES,
    build_transformer,
    fmt_mem,
    forward_bench_arguments,
    interleaved,
    print_table,
    timed,
)
from bench.key_split_attention import key_groups, key_split_attention
from dreamo_core.conditioning.reference_strength import strength_bias
from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward
from dreamo_core.generator.tiny import tiny_tables
from dreamo_core.spec import DreamOSpec

GRIDS = {"one": [(256, 1, 256)], "quick": [(256, 1, 256), (512, 1, 512)],
         "full": [(1024, 1, 512), (1024, 2, 512), (1024, 1, 1024)],
         "gpu-suite": [(1024, 1, 512), (1024, 2, 512)], "tiny": [(128, 2, 64)]}  # bench.gpu_suite / its CPU test
STRENGTH = 0.5  # the strength compared with 1


def attention_call_ms(spec: DreamOSpec, text: int, target: int, refs: list[int], device: str, dtype: torch.dtype,
                      repeat: int) -> dict:
    """One attention call over ``[text | target | refs]`` at ``spec``'s heads: ms unmasked, with the strength bias
    as SDPA's mask, split at the reference keys; max |split - mask|."""
    g = torch.Generator().manual_seed(0)
    n = text + target + sum(refs)
    q, k, v = (torch.randn(1, spec.num_heads, n, spec.attention_head_dim, generator=g).to(device, dtype) for _ in range(3))
    bias = strength_bias([STRENGTH] * len(refs), text, target, refs, 1, dtype, device)
    groups = key_groups(text, target, refs, [STRENGTH] * len(refs))
    calls = [partial(F.scaled_dot_product_attention, q, k, v), partial(F.scaled_dot_product_attention, q, k, v,
             attn_mask=bias), partial(key_split_attention, q, k, v, groups)]
    times, _, _ = interleaved([timed(c, device) for c in calls], repeat)
    with torch.no_grad():
        diff = (calls[2]() - calls[1]()).abs().max().item()
    return {"attn_unmasked_ms": times[0] * 1e3, "attn_mask_ms": times[1] * 1e3, "attn_split_ms": times[2] * 1e3,
            "split_vs_mask_max_abs_diff": diff}


def run(size: str, device: str, dtype: torch.dtype, grid: str, repeat: int, text_tokens: int,
        deadline: float | None = None) -> list[dict]:
    """Per grid point: step ms and peak GiB at strength 1 and ``STRENGTH``, their ratio, the attention calls of
    ``attention_call_ms`` and the step the split would give; prints both tables, returns the rows. No grid
    point starts after ``deadline`` (``time.monotonic()``)."""
    model = build_transformer(size, device, dtype)
    spec = DreamOSpec.of_diffusers_config(model.config)
    tables = tiny_tables(spec).to(device, dtype)
    g = torch.Generator().manual_seed(0)
    c = model.config
    embeds = torch.randn(1, text_tokens, c.joint_attention_dim, generator=g).to(device, dtype)
    pooled = torch.randn(1, c.pooled_projection_dim, generator=g).to(device, dtype)
    sigma = torch.full((1,), 0.5, device=device, dtype=dtype)
    guidance = torch.full((1,), 3.5, device=device)
    blocks = spec.num_double_blocks + spec.num_single_blocks
    rows = []
    px, channels = spec.token_pixels, spec.packed_channels
    for out, n_refs, ref_res in GRIDS[grid]:
        if deadline is not None and time.monotonic() > deadline:
            break
        grid_t, rgrid = (out // px, out // px), (ref_res // px, ref_res // px)
        latents = torch.randn(1, grid_t[0] * grid_t[1], channels, generator=g).to(device, dtype)
        refs = [ReferenceTokens(torch.randn(1, rgrid[0] * rgrid[1], channels, generator=g).to(device, dtype),
                                rgrid, k + 1) for k in range(n_refs)]
        call = partial(dreamo_transformer_forward, model, latents, grid_t, refs, sigma, guidance, pooled, embeds, tables)
        times, ratios, peaks = interleaved([timed(partial(call, strengths=[1.0] * n_refs), device),
                                            timed(partial(call, strengths=[STRENGTH] * n_refs), device)], repeat)
        attention = attention_call_ms(spec, text_tokens, grid_t[0] * grid_t[1], [rgrid[0] * rgrid[1]] * n_refs,
                                      device, dtype, repeat)
        split_step = times[0] * 1e3 + blocks * (attention["attn_split_ms"] - attention["attn_unmasked_ms"])
        rows.append({"output": out, "refs": n_refs, "ref_res": ref_res, "strength_1_ms": times[0] * 1e3,
                     "strength_ms": times[1] * 1e3, "ratio": ratios[1], "strength_1_gib": peaks[0],
                     "strength_gib": peaks[1], **attention, "split_step_ms": split_step,
                     "split_ratio": split_step / (times[0] * 1e3)})
        print(f"  measured {out}² / {n_refs} refs / {ref_res}", file=sys.stderr, flush=True)
    print_table(f"strength {STRENGTH} vs 1 ({size}, {dtype}, {device})",
                ["output", "refs", "ref res", "strength 1 ms", f"strength {STRENGTH} ms", "ratio", "strength 1 GiB",
                 f"strength {STRENGTH} GiB"],
                [[str(r["output"]), str(r["refs"]), str(r["ref_res"]), f"{r['strength_1_ms']:.0f}",
                  f"{r['strength_ms']:.0f}", f"{r['ratio']:.3f}", fmt_mem(r["strength_1_gib"]),
                  fmt_mem(r["strength_gib"])] for r in rows])
    print_table(f"one attention call at the step's tokens; the split's step = strength 1 + {blocks} blocks x "
                "(split - unmasked)",
                ["output", "refs", "unmasked ms", "mask ms", "split ms", "max abs split - mask", "split step ms",
                 "split step / strength 1"],
                [[str(r["output"]), str(r["refs"]), f"{r['attn_unmasked_ms']:.2f}", f"{r['attn_mask_ms']:.2f}",
                  f"{r['attn_split_ms']:.2f}", f"{r['split_vs_mask_max_abs_diff']:.1e}", f"{r['split_step_ms']:.0f}",
                  f"{r['split_ratio']:.3f}"] for r in rows])
    return rows


def main(argv: list[str] | None = None) -> int:
    a = forward_bench_arguments(__doc__, list(SIZES), list(GRIDS)).parse_args(argv)
    run(a.size, a.device, BENCH_DTYPE_BY_NAME[a.dtype], a.grid, a.repeat, a.text_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
