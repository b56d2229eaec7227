"""The preference stage's LoRA (``training.preference``'s exporter, ``export_preference_lora``) stacks with Load
DreamO LoRA through core LoraLoaderModelOnly: the patched FLUX weights equal the base with both LoRAs merged BY HAND
(``bench/comfy_harness/hand_merge.py``: q / k / v rows of the fused qkv / linear1 placed by hand, not by ComfyUI's
key map), at strength 1 and 0.5, and differ from Load DreamO LoRA alone."""

import pytest
import torch

from bench import comfy_harness as h
from bench.comfy_harness.hand_merge import hand_merged_weights, patched_weights, stacked_on_dreamo

pytest.importorskip("peft")

FILE = "preference_lora.safetensors"


@pytest.fixture(scope="module")
def preference_lora(loras_dir):
    """A stage model at the node tests' FLUX sizes with a random (non-zero) new LoRA, written by the stage's
    exporter into the ``loras`` folder."""
    import folder_paths
    from safetensors.torch import load_file

    from training.model import build_model
    from training.preference.config import load_preference_config
    from training.preference.stage import FORMAT, export_preference_lora

    cfg = load_preference_config(None, [
        f"--output_dir={loras_dir}", f"--preference.lora_file={FILE}", "--model.num_layers=1",
        "--model.num_single_layers=1", f"--model.attention_head_dim={h.HIDDEN // h.HEADS}",
        f"--model.num_attention_heads={h.HEADS}", f"--model.joint_attention_dim={h.CTX}",
        f"--model.pooled_projection_dim={h.VEC}", "--model.axes_dims_rope=[16, 24, 24]", "--model.lora_rank=4"])
    model = build_model(cfg.model)
    g = torch.Generator().manual_seed(23)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    path = export_preference_lora(model, cfg, main_process=True)
    folder_paths.filename_list_cache.clear()
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata()["format"] == FORMAT
    return load_file(str(path))


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_preference_lora_stacks_on_load_dreamo_lora_like_a_hand_merge(loras_dir, preference_lora, strength):
    base = h.tiny_flux(0)
    dreamo, stacked = stacked_on_dreamo(base, FILE, strength)
    got, dreamo_only = patched_weights(stacked), patched_weights(dreamo)
    want = hand_merged_weights(base.model.diffusion_model.state_dict(), h.xlabs_lora(), preference_lora, strength)
    worst = max((got[k] - want[k]).abs().max().item() for k in want)
    assert worst <= 1e-6, worst
    moved = [k for k in want if (got[k] - dreamo_only[k]).abs().max().item() > 1e-4]
    assert len(moved) == 6  # the preference LoRA adds to qkv, proj of both streams and linear1, linear2
