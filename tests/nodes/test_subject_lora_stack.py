"""The subject LoRA written by training.tune_subject's exporter stacks with Load DreamO LoRA through core
LoraLoaderModelOnly: the DreamO output with it differs from without it, and equals the same model with both
LoRAs merged into the weights BY HAND (q/k/v rows of the fused qkv / linear1 written out in
bench/comfy_harness/hand_merge.py, not ComfyUI's map)."""

import pytest
import torch

from bench import comfy_harness as h
from bench.comfy_harness.hand_merge import hand_merged_weights, patched_weights, stacked_on_dreamo

pytest.importorskip("peft")

SIGMA, GUIDANCE, FILE = 0.7, 4.0, "tuned_subject_lora.safetensors"


@pytest.fixture(scope="module")
def subject_lora(loras_dir):
    """A trainer model at the node tests' FLUX sizes with a random (non-zero) LoRA, exported as the tune does."""
    import folder_paths

    from training.config import ModelConfig
    from training.model import build_model
    from training.subject.lora import save_subject_lora

    cfg = ModelConfig(num_layers=1, num_single_layers=1, attention_head_dim=h.HIDDEN // h.HEADS,
                      num_attention_heads=h.HEADS, joint_attention_dim=h.CTX, pooled_projection_dim=h.VEC,
                      axes_dims_rope=[16, 24, 24], lora_rank=4)
    model = build_model(cfg)
    g = torch.Generator().manual_seed(21)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    save_subject_lora(model.transformer, loras_dir / FILE, torch.float32)
    folder_paths.filename_list_cache.clear()
    from safetensors.torch import load_file

    return load_file(str(loras_dir / FILE))


def dreamo_output(model):
    refs = h.random_refs([(8, 6)], [1])
    pos = h.conditioning(20)
    pos[0][1]["guidance"] = GUIDANCE
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=model, positive=pos, references=refs)
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    return h.denoise_once(m2, pos, h.conditioning(30), noise, SIGMA, cfg=1.0).denoised


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_subject_lora_stacks_on_load_dreamo_lora_like_a_hand_merge(loras_dir, subject_lora, strength):
    base = h.tiny_flux(0)
    dreamo, stacked = stacked_on_dreamo(base, FILE, strength)
    with_lora, without = dreamo_output(stacked), dreamo_output(dreamo)

    merged = h.tiny_flux(0)
    dm = merged.model.diffusion_model
    dm.load_state_dict(hand_merged_weights(dm.state_dict(), h.xlabs_lora(), subject_lora, strength))
    plain = h.with_dreamo_tables(merged)  # the same tables as dreamo.safetensors
    by_hand = dreamo_output(plain)
    assert (with_lora - by_hand).abs().max().item() <= 2e-5
    assert (with_lora - without).abs().max().item() > 1e-3  # the subject LoRA changes the result
    # the tiny model's q/k pass RMSNorms of scale ~0.05, so the output barely sees q vs k rows: compare weights too
    patched = patched_weights(stacked)
    want = dm.state_dict()
    worst = max((patched[k] - want[k]).abs().max().item() for k in want)
    assert worst <= 1e-6, worst
    changed = [k for k in want if not torch.equal(want[k], base.model.diffusion_model.state_dict()[k])]
    assert len(changed) == 6  # qkv, proj of both streams; linear1, linear2
