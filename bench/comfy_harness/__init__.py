"""The ComfyUI harness shared by the node tests (tests/nodes, tests/browser) and the ComfyUI benches
(bench.bench_comfy, bench.bench_official): stand-ins for libraries ComfyUI imports but this machine never installs,
ComfyUI + this pack loaded as ComfyUI loads custom nodes, tiny models and inputs from ComfyUI's own classes, and the
one guided model call through the real ``CFGGuider`` (and the options of one model call made by hand,
``dreamo_call_options``). Nothing in ComfyUI is replaced.

It lives in ``bench/`` (importable from the repository root, absent from ComfyUI's tree), never in a package
named ``tests``: ComfyUI's own ``tests/`` package sits first on sys.path once COMFYUI_PATH is there. No module
here imports ComfyUI at import time; ``setup_comfy`` does. Also here, imported by name: ``hand_forward`` (the
node tests' independent DreamO forward), ``workflow_api`` (UI workflow -> API prompt) and ``serve_comfyui``
(ComfyUI's server with the stand-ins, for the browser test).
"""

from .direct_call import dreamo_call_options
from .guided_call import (
    Captured,
    denoise_once,
    guided_call,
    guider_call,
    guider_denoise_once,
    seen_position_ids,
)
from .loading import (
    PACK_NAME,
    REPO,
    comfy_path,
    comfyui_version,
    node,
    pack,
    run_core_node,
    run_node,
    setup_comfy,
    use_loras_folder,
    with_dreamo_tables,
)
from .prompt_execution import SilentServer, io_directories, prompt_executor
from .stand_ins import COMFYUI_ABSENT, COMFYUI_UNUSED, stand_in_for_absent
from .tiny_inputs import (
    GUIDANCE,
    REF_SHAPES,
    SIGMA,
    comfy_lora,
    conditioning,
    diffusers_lora,
    dreamo_refs,
    guided_positive,
    random_refs,
    tiny_tables,
    write_loras,
    xlabs_lora,
)
from .tiny_models import (
    CTX,
    FLUX_FAMILY,
    HEADS,
    HIDDEN,
    TINY_SIZES,
    VEC,
    flux1_key_signature,
    flux_config,
    flux_model,
    random_state_dict,
    tiny_family_model,
    tiny_flux,
    tiny_vae,
)

__all__ = [
    "COMFYUI_ABSENT", "COMFYUI_UNUSED", "CTX", "FLUX_FAMILY", "GUIDANCE", "HEADS", "HIDDEN", "PACK_NAME", "REF_SHAPES", "REPO", "SIGMA",
    "TINY_SIZES", "VEC", "Captured", "SilentServer", "comfy_lora", "comfy_path", "comfyui_version", "conditioning",
    "denoise_once", "diffusers_lora", "dreamo_call_options", "dreamo_refs", "flux1_key_signature", "flux_config", "flux_model",
    "guided_call", "guided_positive", "guider_call", "guider_denoise_once", "io_directories", "node", "pack", "prompt_executor", "random_refs",
    "random_state_dict", "run_core_node", "run_node", "seen_position_ids", "setup_comfy", "stand_in_for_absent", "tiny_family_model",
    "tiny_flux", "tiny_tables", "tiny_vae", "use_loras_folder", "with_dreamo_tables", "write_loras", "xlabs_lora",
]
