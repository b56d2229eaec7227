"""Test harness for the node layer against a real ComfyUI (COMFYUI_PATH). Loaded by conftest.py as the
module ``dreamo_nodes_harness`` (never by sys.path, so it is safe with ``--import-mode=importlib``).

Everything here uses ComfyUI's own classes; nothing in ComfyUI is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
HIDDEN, HEADS, CTX, VEC = 128, 2, 48, 32
# the sizes of the tiny FLUX.1 the node tests use; every other FluxParams field comes from ComfyUI's detection
TINY_SIZES = dict(vec_in_dim=VEC, context_in_dim=CTX, hidden_size=HIDDEN, num_heads=HEADS, depth=1,
                  depth_single_blocks=1, axes_dim=[16, 24, 24])
PACK_NAME = str(REPO).replace(".", "_x_")


STUBBED = ("torchvision", "torchaudio")  # CUDA wheels only (they pull a CUDA torch): never installed here


class MissingLibrary:
    """Stands in for any name imported from a stubbed library; fails loudly if anything actually uses it."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self.name} is a test stub: {self.name.split('.')[0]} is not installed")

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return MissingLibrary(f"{self.name}.{attr}")


class StubModule(types.ModuleType):
    """A stub package: every submodule exists and every attribute is a MissingLibrary."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return MissingLibrary(f"{self.__name__}.{attr}")


class StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``torchvision``/``torchaudio`` and any submodule of them (ComfyUI 0.33 imports e.g.
    ``torchvision.ops``, ``torchvision.transforms.functional``, ``torchaudio.functional`` at start-up)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in STUBBED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def stub_torchvision_torchaudio() -> None:
    """ComfyUI imports torchvision (and, from 0.33, torchaudio) on import paths we do not use
    (comfy_integration.md §10, ../shared/comfyui/README.md)."""
    # transformers/diffusers decide once, at import, whether torchvision exists: let them see the truth first,
    # so the stub (visible to ComfyUI only by intent) never makes them import torchvision features.
    for lib in ("transformers.utils.import_utils", "diffusers.utils.import_utils"):
        try:
            importlib.import_module(lib)
        except ImportError:
            pass
    missing = [name for name in STUBBED if importlib.util.find_spec(name) is None]
    if missing and not any(isinstance(f, StubFinder) for f in sys.meta_path):
        sys.meta_path.append(StubFinder())  # last: a real install would always win


def setup_comfy(comfy_path: str) -> None:
    """Import ComfyUI on CPU, its built-in extra nodes, and our pack the way ComfyUI loads custom nodes."""
    if comfy_path not in sys.path:
        sys.path.insert(0, comfy_path)  # ahead of the cwd that ``python -m pytest`` adds
    mod = sys.modules.get("nodes")
    if mod is not None and not str(getattr(mod, "__file__", "")).startswith(comfy_path):
        del sys.modules["nodes"]  # never our nodes/ package
    stub_torchvision_torchaudio()
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    if not asyncio.run(nodes.load_custom_node(str(REPO))):
        raise RuntimeError("ComfyUI could not load the DreamO pack")


def pack(module: str) -> types.ModuleType:
    """A module of our pack as ComfyUI imported it, e.g. pack('nodes.wrapper')."""
    return importlib.import_module(f"{PACK_NAME}.{module}")  # imported by ComfyUI already, or now under it


def node(node_id: str) -> type:
    import nodes

    return nodes.NODE_CLASS_MAPPINGS[node_id]


def run_node(node_id: str, **inputs):
    """Execute a V3 node class directly; returns its outputs tuple."""
    return node(node_id).execute(**inputs).result


def random_state_dict(module: torch.nn.Module, seed: int, scale: float = 0.05) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * scale for k, v in module.state_dict().items()}


def flux1_key_signature(depth: int = 1, depth_single: int = 1) -> dict[str, torch.Tensor]:
    """The keys (meta tensors, FLUX.1-dev shapes) by which ComfyUI's model detection recognises a FLUX.1 file."""
    meta = torch.device("meta")
    sd = {"img_in.weight": torch.empty(3072, 64, device=meta), "txt_in.weight": torch.empty(3072, 4096, device=meta),
          "vector_in.in_layer.weight": torch.empty(3072, 768, device=meta),
          "guidance_in.in_layer.weight": torch.empty(3072, 256, device=meta)}
    for i in range(depth):
        sd[f"double_blocks.{i}.img_attn.norm.key_norm.scale"] = torch.empty(128, device=meta)
    for i in range(depth_single):
        sd[f"single_blocks.{i}.norm.key_norm.scale"] = torch.empty(128, device=meta)
    return sd


FLUX_FAMILY = {  # name -> (keys to add to the FLUX.1 signature, keys to drop, size overrides)
    "flux1-schnell": ({}, ("guidance_in.in_layer.weight",), {}),
    "flux1-fill": ({"img_in.weight": (3072, 384)}, (), {}),
    "chroma": ({"distilled_guidance_layer.norms.0.scale": (128,)}, ("vector_in.in_layer.weight", "guidance_in.in_layer.weight"),
               {"in_dim": 64, "out_dim": HIDDEN, "hidden_dim": 64, "n_layers": 1}),
    "flux2": ({"double_stream_modulation_img.lin.weight": (3072, 3072)}, ("vector_in.in_layer.weight",),
              {"num_heads": 1, "axes_dim": [32, 32, 32, 32]}),
}


def tiny_family_model(name: str):
    """A tiny ModelPatcher of another model of the FLUX family (FLUX_FAMILY), detected by ComfyUI from its key
    signature as a real file would be, or None where this ComfyUI does not know that family (FLUX.2 < 0.3.72)."""
    import comfy.model_detection
    import comfy.model_patcher

    add, drop, sizes = FLUX_FAMILY[name]
    sd = {k: v for k, v in flux1_key_signature().items() if k not in drop}
    sd.update({k: torch.empty(*shape, device="meta") for k, shape in add.items()})
    unet_config = comfy.model_detection.detect_unet_config(sd, "")
    if unet_config is None or (name == "flux2" and unet_config.get("image_model") != "flux2"):
        return None
    has_vec = "vec_in_dim" in unet_config  # Chroma on 0.3.64 has no such field
    unet_config.update(TINY_SIZES)
    unet_config.update(sizes)
    if not has_vec:
        del unet_config["vec_in_dim"]
    elif "vector_in.in_layer.weight" not in sd:
        unet_config["vec_in_dim"] = None
    mc = comfy.model_detection.model_config_from_unet_config(unet_config)
    if mc is None:
        return None
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(mc.get_model({}), load_device=cpu, offload_device=cpu)


def tiny_flux_config():
    """ComfyUI's model config for a FLUX.1 file, detected the way a real file is (so fields newer ComfyUI
    versions add, like ``txt_ids_dims``, are filled by ComfyUI itself), with only the sizes made tiny."""
    import comfy.model_detection

    unet_config = comfy.model_detection.detect_unet_config(flux1_key_signature(), "")
    assert unet_config is not None and unet_config.get("image_model") == "flux", unet_config
    unet_config.update(TINY_SIZES)
    mc = comfy.model_detection.model_config_from_unet_config(unet_config)
    assert mc is not None, "ComfyUI found no model config for a FLUX.1 unet config"
    return mc


def tiny_flux(seed: int = 0, dtype: torch.dtype = torch.float32, compute: torch.dtype | None = None):
    """A tiny FLUX.1 ModelPatcher from ComfyUI's own classes (comfy_integration.md §8)."""
    import comfy.model_patcher

    mc = tiny_flux_config()
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


def diffusers_lora(rank: int = 4, seed: int = 11) -> dict[str, torch.Tensor]:
    """A tiny FLUX LoRA in diffusers / peft keys (``transformer.<module>.lora_A/lora_B.weight``), the subject
    LoRA's layout (training/subject_lora.py): one double-block and one single-block target."""
    g = torch.Generator().manual_seed(seed)
    h = HIDDEN
    targets = {"transformer_blocks.0.attn.to_k": (h, h), "single_transformer_blocks.0.proj_out": (h + 4 * h, h)}
    sd = {}
    for name, (n_in, n_out) in targets.items():
        sd[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, n_in, generator=g) * 0.1
        sd[f"transformer.{name}.lora_B.weight"] = torch.randn(n_out, rank, generator=g) * 0.1
    return sd


def write_loras(folder: Path) -> None:
    """Synthetic files with the official names, in a folder registered as ComfyUI ``loras``."""
    import folder_paths
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    t5 = torch.randn(12, CTX, generator=torch.Generator().manual_seed(9))  # as wide as the model's text input
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
        "dreamo_subject_lora.safetensors": diffusers_lora(),
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


@contextlib.contextmanager
def seen_position_ids(model_patcher):
    """Every (B, L_txt + L_img, ids) tensor the FLUX model turns into RoPE while the block runs: a forward
    pre-hook on this model's ``pe_embedder``, removed afterwards (DreamO refuses other post_input patches, so
    a test cannot observe the ids with one)."""
    seen: list[torch.Tensor] = []
    module = model_patcher.model.diffusion_model.pe_embedder
    handle = module.register_forward_pre_hook(lambda _mod, args: seen.append(args[0].detach().clone()))
    try:
        yield seen
    finally:
        handle.remove()


@contextlib.contextmanager
def io_directories(inputs: Path, outputs: Path):
    """ComfyUI's input / output folders pointed at ``inputs`` / ``outputs`` for the block, restored after."""
    import folder_paths

    old_in, old_out = folder_paths.get_input_directory(), folder_paths.get_output_directory()
    folder_paths.set_input_directory(str(inputs))
    folder_paths.set_output_directory(str(outputs))
    try:
        yield outputs
    finally:
        folder_paths.set_input_directory(old_in)
        folder_paths.set_output_directory(old_out)


class SilentServer:
    """The PromptServer stand-in a PromptExecutor reports to (progress and queue messages dropped)."""

    client_id = None
    last_node_id = None

    def send_sync(self, *args, **kwargs):
        pass

    def queue_updated(self):
        pass


def prompt_executor(server=None):
    """ComfyUI's PromptExecutor (reporting to ``server``, default a SilentServer) with the classic cache. Newer versions take ``cache_args`` (``lru``, ``ram``,
    ``ram_inactive``, read on every run) instead of ``cache_size``: the signature decides, not the version."""
    import execution

    server = SilentServer() if server is None else server
    params = inspect.signature(execution.PromptExecutor).parameters
    if "cache_args" in params:
        return execution.PromptExecutor(server, cache_type=False, cache_args={"lru": 0, "ram": 0.0, "ram_inactive": 0.0})
    return execution.PromptExecutor(server, cache_type=False)


def comfy_path() -> str | None:
    return os.environ.get("COMFYUI_PATH") or None


def comfyui_version() -> tuple[int, ...]:
    """The ComfyUI under test, e.g. (0, 33, 0) (its comfyui_version.py). Only tests use it, to say which
    workflows a version can run; the pack itself detects features."""
    import comfyui_version

    return tuple(int(part) for part in comfyui_version.__version__.split(".")[:3])
