"""Step time / peak memory of plain ComfyUI FLUX vs the same model through the DreamO nodes, in ONE run.

    COMFYUI_PATH=/path/to/ComfyUI python -m bench.bench_comfy                    # CPU, small model, quick grid
    COMFYUI_PATH=... python -m bench.bench_comfy --size full --device cuda --dtype bf16 --grid full

Each step is one guided model call through ComfyUI's real CFGGuider (cfg 1, as DreamO workflows run), so the
DreamO wrapper, the post_input patch and core's reference concatenation are all inside the measurement. Plain and
DreamO calls are interleaved with a plain call at DreamO's token count; ratios are medians of the per-round
ratios, and "overhead" is DreamO over that same-token plain call (what the nodes add beyond "more tokens"). ``--size width``: FLUX.1-dev's width
with 2 + 2 blocks (CPU-sized).
Also checks that a model which did not go through Apply gives a bit-identical output (0% no-reference overhead).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from bench import comfy_harness as h
from bench.bench_diffusers import GRIDS
from bench.common import (
    BENCH_DTYPE_BY_NAME,
    HEADER,
    forward_bench_arguments,
    interleaved,
    overhead_cells,
    overhead_row,
    print_table,
    same_token_grid,
    size_spec,
    timed,
)
from bench.common import SIZES as DIFFUSERS_SIZES
from bench.flops import floor_ratio

# the size fields of ComfyUI's FluxParams of each size of bench.common (the rest comes from ComfyUI's detection
# of a FLUX.1 file): "width" is FLUX.1-dev's width with 2 + 2 blocks, "full" FLUX.1-dev
SIZES = {size: size_spec(size).comfy_flux_params() for size in DIFFUSERS_SIZES}
SIGMA = 0.7  # of the one guided call per step


def setup_comfyui(comfy_path: str | None = None, **cli_args: object) -> None:
    """ComfyUI (``comfy_path``, default $COMFYUI_PATH; ``cli_args`` as ``h.setup_comfy``'s: on the CPU unless
    ``cpu=False``) and this pack, loaded by the shared harness; SystemExit without a ComfyUI path."""
    comfy_path = comfy_path or os.environ.get("COMFYUI_PATH")
    if not comfy_path:
        raise SystemExit("bench_comfy: set COMFYUI_PATH to a ComfyUI checkout (>= 0.3.64)")
    h.setup_comfy(comfy_path, **cli_args)


def random_comfy_flux(size: str, dtype: torch.dtype, device: str):
    """Plain ComfyUI FLUX ModelPatcher of ``SIZES[size]`` with seeded random weights (seed 0, N(0, 0.02²)): the
    config detected by ComfyUI from a FLUX.1 key signature, as a real file is (``h.flux_model``)."""
    return h.flux_model(SIZES[size], seed=0, dtype=dtype, device=device, scale=0.02)


def model_call(model, positive, negative, noise, device: str, outputs: dict | None = None,
               sigma: float = SIGMA) -> tuple[float, float | None]:
    """(seconds, peak GPU GiB) of one guided model call at ``sigma`` through ComfyUI's CFGGuider (cfg 1,
    ``h.guided_call``); its output goes to ``outputs["y"]`` when given."""
    def step(denoise, x) -> tuple[float, float | None]:
        y = None

        def call():
            nonlocal y
            y = denoise(x)

        measured = timed(call, device)()
        if outputs is not None:
            outputs["y"] = y
        return measured

    with torch.no_grad():
        return h.guided_call(model, positive, negative, noise, sigma, 1.0, step)


def plain_and_dreamo(size: str, dtype: torch.dtype, device: str, text_tokens: int, g: torch.Generator) -> tuple:
    """(plain FLUX, the same through Load DreamO LoRA with random tables, a positive conditioning of
    ``text_tokens`` random text tokens), random values from ``g``; ComfyUI set up already."""
    from safetensors.torch import save_file

    model, cfg = random_comfy_flux(size, dtype, device), SIZES[size]
    hidden = cfg["hidden_size"]
    loras = Path(tempfile.mkdtemp())
    save_file({"dreamo_task_embedding.weight": torch.randn(2, hidden, generator=g),
               "dreamo_idx_embedding.weight": torch.randn(10, hidden, generator=g)}, str(loras / "embedding.safetensors"))
    h.use_loras_folder(loras)
    ctx = torch.randn(1, text_tokens, cfg["context_in_dim"], generator=g).to(dtype)
    cond = [[ctx, {"pooled_output": torch.randn(1, cfg["vec_in_dim"], generator=g).to(dtype), "guidance": 3.5}]]
    return model, h.with_dreamo_tables(model), cond


def run(size: str, device: str, dtype: torch.dtype, grid: str, repeat: int, text_tokens: int,
        deadline: float | None = None, comfy_path: str | None = None) -> list[dict]:
    """Measure every grid point (``common.overhead_row`` each), print the table and return the rows; no grid point
    starts after ``deadline`` (``time.monotonic()``). ComfyUI (``comfy_path``, default $COMFYUI_PATH) runs on
    ``device`` (its CPU mode elsewhere)."""
    setup_comfyui(comfy_path, cpu=not device.startswith("cuda"))
    g = torch.Generator().manual_seed(1)
    model, dreamo_model, cond = plain_and_dreamo(size, dtype, device, text_tokens, g)
    spec = size_spec(size)
    rows = []
    for out, n_refs, ref_res in GRIDS[grid]:
        if deadline is not None and time.monotonic() > deadline:
            break
        noise = torch.randn(1, 16, out // 8, out // 8, generator=g)
        refs = h.dreamo_refs([torch.randn(1, 16, ref_res // 8, ref_res // 8, generator=g) for _ in range(n_refs)])
        m, pos = h.run_node("DreamO_ApplyConditioning", model=dreamo_model, positive=cond, references=refs)
        ref_tokens = [(ref_res // 16) ** 2] * n_refs
        rows_t, cols_t = same_token_grid((out // 16) ** 2 + sum(ref_tokens))
        same_noise = torch.randn(1, 16, rows_t * 2, cols_t * 2, generator=g)
        setups = [(model, cond, cond, noise), (m, pos, cond, noise), (model, cond, cond, same_noise)]
        floor = floor_ratio((out // 16) ** 2, ref_tokens, text_tokens, spec)
        rows.append(overhead_row(out, n_refs, ref_res, *interleaved([partial(model_call, *setup, device)
                                                                     for setup in setups], repeat), floor))
        print(f"  measured {out}² / {n_refs} refs / {ref_res}", file=sys.stderr, flush=True)
        if out == GRIDS[grid][0][0] and n_refs == 0:
            plain_y, again = {}, {}
            model_call(model, cond, cond, noise, device, plain_y)
            model_call(dreamo_model, cond, cond, noise, device, again)  # loaded, never applied
            same = torch.equal(again["y"], plain_y["y"])
            print(f"model through Load DreamO LoRA but not Apply: output bit-identical to plain FLUX: {same}")
    print_table(f"ComfyUI FLUX vs DreamO nodes ({size}, {device}, {dtype}, {text_tokens} text tokens, cfg 1)",
                HEADER, [overhead_cells(r) for r in rows])
    return rows


def main(argv: list[str] | None = None) -> None:
    p = forward_bench_arguments(__doc__, sorted(SIZES), sorted(GRIDS))
    a = p.parse_args(argv)
    run(a.size, a.device, BENCH_DTYPE_BY_NAME[a.dtype], a.grid, a.repeat, a.text_tokens)


if __name__ == "__main__":
    main()
