"""Test harness for the node layer against a real ComfyUI (COMFYUI_PATH). Loaded by conftest.py as the
module ``dreamo_nodes_harness`` (never by sys.path, so it is safe with ``--import-mode=importlib``).

Everything here uses ComfyUI's own classes; nothing in ComfyUI is replaced.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.machinery
import os
import sys
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
HIDDEN, HEADS, CTX, VEC = 128, 2, 48, 32
TINY_FLUX = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=VEC, context_in_dim=CTX,
                 hidden_size=HIDDEN, mlp_ratio=4.0, num_heads=HEADS, depth=1, depth_single_blocks=1,
                 axes_dim=[16, 24, 24], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)
PACK_NAME = str(REPO).replace(".", "_x_")


def stub_torchvision() -> None:
    """ComfyUI imports torchvision on import paths we do not use (comfy_integration.md §10)."""
    # transformers/diffusers decide once, at import, whether torchvision exists: let them see the truth first,
    # so the stub (visible to ComfyUI only by intent) never makes them import torchvision features.
    for lib in ("transformers.utils.import_utils", "diffusers.utils.import_utils"):
        try:
            importlib.import_module(lib)
        except ImportError:
            pass
    try:
        importlib.import_module("torchvision")
    except ImportError:
        for name in ("torchvision", "torchvision.transforms", "torchvision.models"):
            stub = types.ModuleType(name)
            stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules.setdefault(name, stub)
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        sys.modules["torchvision"].models = sys.modules["torchvision.models"]


def setup_comfy(comfy_path: str) -> None:
    """Import ComfyUI on CPU, its built-in extra nodes, and our pack the way ComfyUI loads custom nodes."""
    if comfy_path not in sys.path:
        sys.path.insert(0, comfy_path)  # ahead of the cwd that ``python -m pytest`` adds
    mod = sys.modules.get("nodes")
    if mod is not None and not str(getattr(mod, "__file__", "")).startswith(comfy_path):
        del sys.modules["nodes"]  # never our nodes/ package
    stub_torchvision()
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    if not asyncio.run(nodes.load_custom_node(str(REPO))):
        raise RuntimeError("ComfyUI could not load the DreamO pack")


def pack(module: str) -> types.ModuleType:
    """A module of our pack as ComfyUI imported it, e.g. pack('nodes.wrapper')."""
    return sys.modules[f"{PACK_NAME}.{module}"]


def node(node_id: str) -> type:
    import nodes

    return nodes.NODE_CLASS_MAPPINGS[node_id]


def run_node(node_id: str, **inputs):
    """Execute a V3 node class directly; returns its outputs tuple."""
    return node(node_id).execute(**inputs).result


def random_state_dict(module: torch.nn.Module, seed: int, scale: float = 0.05) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * scale for k, v in module.state_dict().items()}


def tiny_flux(seed: int = 0, dtype: torch.dtype = torch.float32, compute: torch.dtype | None = None):
    """A tiny FLUX ModelPatcher from ComfyUI's own classes (comfy_integration.md §8)."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    mc = comfy.supported_models.Flux(dict(TINY_FLUX))
    mc.set_inference_dtype(dtype, compute)
    base = mc.get_model({})
    sd = random_state_dict(base.diffusion_model, seed)
    base.load_model_weights(sd, "")
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(base, load_device=cpu, offload_device=cpu)


def tiny_vae(seed: int = 0):
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = dict(double_z=True, z_channels=16, resolution=256, in_channels=3, out_ch=3, ch=32,
                    ch_mult=[1, 1, 1, 1], num_res_blocks=1, attn_resolutions=[], dropout=0.0)
    sd = random_state_dict(AutoencoderKL(embed_dim=16, ddconfig=ddconfig), seed, scale=0.1)  # comfy ops skip init
    return comfy.sd.VAE(sd=sd, config={"params": {"embed_dim": 16, "ddconfig": ddconfig}})


def tiny_tables(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"dreamo_task_embedding.weight": torch.randn(2, HIDDEN, generator=g),
            "dreamo_idx_embedding.weight": torch.randn(10, HIDDEN, generator=g)}


def xlabs_lora(rank: int = 4, seed: int = 2, prefix: str = "") -> dict[str, torch.Tensor]:
    """A tiny LoRA in the original dreamo.safetensors key layout (``double_blocks_0.processor.qkv_lora1...``)."""
    g = torch.Generator().manual_seed(seed)
    h, mlp = HIDDEN, int(HIDDEN * 4.0)
    shapes = {"qkv_lora1": (h, 3 * h), "proj_lora1": (h, h), "qkv_lora2": (h, 3 * h), "proj_lora2": (h, h)}
    sd = {}
    for tag, (n_in, n_out) in shapes.items():
        sd[f"{prefix}double_blocks_0.processor.{tag}.down.weight"] = torch.randn(rank, n_in, generator=g) * 0.1
        sd[f"{prefix}double_blocks_0.processor.{tag}.up.weight"] = torch.randn(n_out, rank, generator=g) * 0.1
    for tag, (n_in, n_out) in {"qkv_lora": (h, 3 * h), "proj_lora": (h + mlp, h)}.items():
        sd[f"{prefix}single_blocks_0.processor.{tag}.down.weight"] = torch.randn(rank, n_in, generator=g) * 0.1
        sd[f"{prefix}single_blocks_0.processor.{tag}.up.weight"] = torch.randn(n_out, rank, generator=g) * 0.1
    return sd


def comfy_lora(rank: int = 4, seed: int = 3) -> dict[str, torch.Tensor]:
    """A tiny LoRA in ComfyUI format (``diffusion_model.<module>.lora_up/lora_down.weight``)."""
    g = torch.Generator().manual_seed(seed)
    h = HIDDEN
    targets = {"double_blocks.0.img_attn.proj": (h, h), "single_blocks.0.linear1": (h, 3 * h + 4 * h)}
    sd = {}
    for name, (n_in, n_out) in targets.items():
        sd[f"diffusion_model.{name}.lora_down.weight"] = torch.randn(rank, n_in, generator=g) * 0.1
        sd[f"diffusion_model.{name}.lora_up.weight"] = torch.randn(n_out, rank, generator=g) * 0.1
    return sd


def write_loras(folder: Path) -> None:
    """Synthetic files with the official names, in a folder registered as ComfyUI ``loras``."""
    import folder_paths
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    t5 = torch.randn(12, 4096, generator=torch.Generator().manual_seed(9))
    files = {
        "dreamo.safetensors": {**xlabs_lora(), **tiny_tables(), "dreamo_t5_embedding.weight": t5},
        "dreamo_comfyui.safetensors": comfy_lora(),
        "embedding.safetensors": tiny_tables(),
        "dreamo_cfg_distill_comfyui.safetensors": comfy_lora(seed=4),
        "dreamo_quality_lora_pos_comfyui.safetensors": comfy_lora(seed=5),
        "dreamo_quality_lora_neg_comfyui.safetensors": comfy_lora(seed=6),
        "flux-turbo.safetensors": comfy_lora(seed=7),
        "dreamo_sft_lora.safetensors": comfy_lora(seed=8),
        "dreamo_dpo_lora.safetensors": comfy_lora(seed=10),
        "not_dreamo.safetensors": {"model.diffusion_model.img_in.weight": torch.zeros(4, 4)},
        "tables_wrong_width.safetensors": {"dreamo_task_embedding.weight": torch.zeros(2, 64),
                                           "dreamo_idx_embedding.weight": torch.zeros(10, 64)},
    }
    for name, sd in files.items():
        save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / name))
    folder_paths.add_model_folder_path("loras", str(folder), is_default=True)
    folder_paths.filename_list_cache.clear()


def conditioning(seed: int, tokens: int = 5, batch: int = 1) -> list:
    """Fake text-encoder output: [[context (B, T, 48), {"pooled_output": (B, 32)}]]."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(batch, tokens, CTX, generator=g), {"pooled_output": torch.randn(batch, VEC, generator=g)}]]


class Captured:
    """What one guided model call saw: x (the noised input) and the denoised output."""

    x: torch.Tensor
    denoised: torch.Tensor


def denoise_once(model, positive, negative, noise: torch.Tensor, sigma: float, cfg: float) -> Captured:
    """One guided model evaluation at ``sigma`` through ComfyUI's real CFGGuider / sampling stack."""
    import comfy.samplers

    cap = Captured()

    def sampler_fn(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        cap.x = x.clone()
        cap.denoised = model_k(x, sigmas[0] * x.new_ones(x.shape[0]), **(extra_args or {}))
        return cap.denoised

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    sigmas = torch.tensor([sigma, 0.0])
    guider.sample(noise, torch.zeros_like(noise), comfy.samplers.KSAMPLER(sampler_fn), sigmas, disable_pbar=True, seed=0)
    return cap


def comfy_path() -> str | None:
    return os.environ.get("COMFYUI_PATH") or None
