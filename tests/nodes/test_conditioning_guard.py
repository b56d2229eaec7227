"""The guard Apply DreamO Conditioning's output carries (nodes/runtime/conditioning_guard.py): free on a DreamO model,
an error on any other model, and absent where ComfyUI's dynamic VRAM would reload the model for it."""

import pytest
import torch

from bench import comfy_harness as h

NOISE = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))


def without_hooks(conditioning):
    return [[c, {k: v for k, v in d.items() if k != "hooks"}] for c, d in conditioning]


def test_on_a_dreamo_model_the_guard_changes_nothing(dreamo_model):
    """The guard declines to register on a DreamO model, so ComfyUI drops it: the same model calls with the same
    batch sizes (positive and negative batched together without references) and the same output, bit for bit."""
    _, m = dreamo_model()
    _, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive())
    assert "hooks" in pos[0][1]
    runs = {}
    for name, cond in (("guarded", pos), ("bare", without_hooks(pos))):
        with h.seen_position_ids(m) as ids:
            runs[name] = (h.denoise_once(m, cond, h.conditioning(30), NOISE, h.SIGMA, cfg=2.0).denoised,
                          [t.shape[0] for t in ids])
    assert runs["guarded"][1] == runs["bare"][1] == [2]
    assert torch.equal(runs["guarded"][0], runs["bare"][0])


def test_a_model_without_dreamo_is_refused_before_any_step(dreamo_model):
    base, m = dreamo_model()
    _, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(),
                        references=h.random_refs([(4, 4)], [1]))
    calls = []
    counted = base.clone()
    counted.set_model_unet_function_wrapper(lambda apply, args: calls.append(1) or apply(args["input"], args["timestep"],
                                                                                          **args["c"]))
    with pytest.raises(ValueError, match=r"^Apply DreamO Conditioning: positive: a conditioning carrying DreamO "
                                         r"references reaches a sampler whose model did not go through Load DreamO"):
        h.denoise_once(counted, pos, h.conditioning(30), NOISE, h.SIGMA, cfg=1.0)
    assert calls == []
    h.denoise_once(counted, without_hooks(pos), h.conditioning(30), NOISE, h.SIGMA, cfg=1.0)  # what it would do
    assert calls == [1]


def test_no_guard_where_dynamic_vram_would_reload_the_model(dreamo_model):
    """With dynamic VRAM (ComfyUI 0.16+ on NVIDIA; simulated by the model patcher's is_dynamic) any cond hook makes
    CFGGuider.set_conds rebuild the model through its loader, so Apply adds none there."""
    _, m = dreamo_model()
    dynamic = m.clone()
    dynamic.is_dynamic = lambda: True
    _, pos = h.run_node("DreamO_ApplyConditioning", model=dynamic, positive=h.guided_positive())
    assert "hooks" not in pos[0][1] and "dreamo_layout" in pos[0][1]
