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

import importlib.util
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch

from bench.bench_diffusers import GRIDS
from bench.common import (
    DTYPES,
    HEADER,
    fmt_mem,
    forward_bench_arguments,
    interleaved,
    print_table,
    ratio_cells,
    same_token_grid,
    timed,
)
from bench.flops import floor_ratio
from dreamo_core.spec import DreamOSpec

SIZES = {  # comfy FluxParams overrides
    "small": dict(hidden_size=256, num_heads=4, depth=2, depth_single_blocks=4, context_in_dim=256, vec_in_dim=64,
                  axes_dim=[16, 24, 24]),
    "width": dict(hidden_size=3072, num_heads=24, depth=2, depth_single_blocks=2, context_in_dim=4096,
                  vec_in_dim=768, axes_dim=[16, 56, 56]),  # FLUX.1-dev width, 2 + 2 blocks (as bench.common)
    "full": dict(hidden_size=3072, num_heads=24, depth=19, depth_single_blocks=38, context_in_dim=4096, vec_in_dim=768,
                 axes_dim=[16, 56, 56]),
}


def load_harness():
    path = Path(__file__).resolve().parents[1] / "tests" / "nodes" / "harness.py"
    spec = importlib.util.spec_from_file_location("dreamo_nodes_harness", path)
    h = importlib.util.module_from_spec(spec)
    sys.modules["dreamo_nodes_harness"] = h
    spec.loader.exec_module(h)
    comfy_path = os.environ.get("COMFYUI_PATH")
    if not comfy_path:
        raise SystemExit("bench_comfy: set COMFYUI_PATH to a ComfyUI checkout (>= 0.3.56)")
    h.setup_comfy(comfy_path)
    return h


def build_model(size: str, dtype: torch.dtype, device: str, harness):
    """Plain ComfyUI FLUX ModelPatcher with seeded random weights: the config detected by ComfyUI from a FLUX.1
    key signature, as a real file is (fields newer versions add, e.g. ``txt_ids_dims``, filled by ComfyUI), with
    only the sizes of ``SIZES[size]``."""
    import comfy.model_detection
    import comfy.model_patcher
    import comfy.supported_models

    cfg = comfy.model_detection.detect_unet_config(harness.flux1_key_signature(), "")
    cfg.update(SIZES[size])
    mc = comfy.supported_models.Flux(cfg)
    mc.set_inference_dtype(dtype, None)
    with torch.device(device):
        base = mc.get_model({}, device=device)
    g = torch.Generator().manual_seed(0)
    sd = {k: (torch.randn(v.shape, generator=g) * 0.02).to(dtype) for k, v in base.diffusion_model.state_dict().items()}
    base.load_model_weights(sd, "")
    base.to(device)
    dev = torch.device(device)
    return comfy.model_patcher.ModelPatcher(base, load_device=dev, offload_device=dev), cfg


def model_call(model, positive, negative, noise, device: str, outputs: dict | None = None) -> tuple[float, float | None]:
    """(seconds, peak GPU GiB) of one guided model call through ComfyUI's CFGGuider; its output goes to
    ``outputs["y"]`` when given."""
    import comfy.samplers

    measured = {}

    def sampler_fn(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        s = sigmas[0] * x.new_ones(x.shape[0])
        y = None

        def call():
            nonlocal y
            y = model_k(x, s, **(extra_args or {}))

        measured["m"] = timed(call, device)()
        if outputs is not None:
            outputs["y"] = y
        return y

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(1.0)
    with torch.no_grad():
        guider.sample(noise, torch.zeros_like(noise), comfy.samplers.KSAMPLER(sampler_fn), torch.tensor([0.7, 0.0]),
                      disable_pbar=True, seed=0)
    return measured["m"]


def run(size: str, device: str, dtype: torch.dtype, grid: str, repeat: int, text_tokens: int) -> None:
    h = load_harness()
    import folder_paths
    from safetensors.torch import save_file

    model, cfg = build_model(size, dtype, device, h)
    hidden = cfg["hidden_size"]
    spec = DreamOSpec(hidden_size=hidden, num_double_blocks=cfg["depth"], num_single_blocks=cfg["depth_single_blocks"],
                      t5_dim=cfg["context_in_dim"])
    loras = Path(tempfile.mkdtemp())
    g = torch.Generator().manual_seed(1)
    save_file({"dreamo_task_embedding.weight": torch.randn(2, hidden, generator=g),
               "dreamo_idx_embedding.weight": torch.randn(10, hidden, generator=g)}, str(loras / "embedding.safetensors"))
    folder_paths.add_model_folder_path("loras", str(loras), is_default=True)
    folder_paths.filename_list_cache.clear()
    (dreamo_model,) = h.run_node("DreamO_LoadLoRA", model=model, lora_name="None", strength=1.0,
                                 embedding_name="embedding.safetensors")
    refs_mod = h.pack("nodes.runtime.references")
    ctx = torch.randn(1, text_tokens, cfg["context_in_dim"], generator=g).to(dtype)
    cond = [[ctx, {"pooled_output": torch.randn(1, cfg["vec_in_dim"], generator=g).to(dtype), "guidance": 3.5}]]
    rows = []
    for out, n_refs, ref_res in GRIDS[grid]:
        noise = torch.randn(1, 16, out // 8, out // 8, generator=g)
        refs = refs_mod.DreamORefs(tuple(
            refs_mod.EncodedReference(torch.randn(1, 16, ref_res // 8, ref_res // 8, generator=g), "ip", k + 1)
            for k in range(n_refs)))
        m, pos = h.run_node("DreamO_ApplyConditioning", model=dreamo_model, positive=cond, references=refs)
        ref_tokens = [(ref_res // 16) ** 2] * n_refs
        rows_t, cols_t = same_token_grid((out // 16) ** 2 + sum(ref_tokens))
        same_noise = torch.randn(1, 16, rows_t * 2, cols_t * 2, generator=g)
        setups = [(model, cond, cond, noise), (m, pos, cond, noise), (model, cond, cond, same_noise)]
        (base_s, s, same_s), (_, ratio, same_ratio), (base_mem, mem, _) = interleaved(
            [partial(model_call, *setup, device) for setup in setups], repeat)
        floor = floor_ratio((out // 16) ** 2, ref_tokens, text_tokens, spec)
        rows.append([f"{out}²", str(n_refs), f"{ref_res}" if n_refs else "-", f"{base_s * 1e3:.1f}", f"{s * 1e3:.1f}",
                     f"{same_s * 1e3:.1f}", *ratio_cells(ratio, floor, ratio / same_ratio), fmt_mem(base_mem),
                     fmt_mem(mem)])
        print(f"  measured {out}² / {n_refs} refs / {ref_res}", file=sys.stderr, flush=True)
        if out == GRIDS[grid][0][0] and n_refs == 0:
            plain_y, again = {}, {}
            model_call(model, cond, cond, noise, device, plain_y)
            model_call(dreamo_model, cond, cond, noise, device, again)  # loaded, never applied
            same = torch.equal(again["y"], plain_y["y"])
            print(f"model through Load DreamO LoRA but not Apply: output bit-identical to plain FLUX: {same}")
    print_table(f"ComfyUI FLUX vs DreamO nodes ({size}, {device}, {dtype}, {text_tokens} text tokens, cfg 1)",
                HEADER, rows)


def main(argv: list[str] | None = None) -> None:
    p = forward_bench_arguments(__doc__, sorted(SIZES), sorted(GRIDS))
    a = p.parse_args(argv)
    run(a.size, a.device, DTYPES[a.dtype], a.grid, a.repeat, a.text_tokens)


if __name__ == "__main__":
    main()
