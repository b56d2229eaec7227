"""Per-run checks (nodes/run_checks.py): one warning per sampling run, never per step, never shared between
clones; refusals before any step runs."""

import logging

import pytest
import torch

from bench import comfy_harness as h

WITHOUT_APPLY = "sampled without Apply DreamO Conditioning"


def ksample(model, pos, steps=3, cfg=1.0, seed=7):
    import nodes

    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    (out,) = nodes.common_ksampler(model, seed, steps, cfg, "euler", "simple", pos, h.conditioning(30), latent)
    return out["samples"]


def warnings_of(caplog, words):
    return [r for r in caplog.records if r.levelno == logging.WARNING and words in r.getMessage()]


def test_warning_once_per_sampling_run_not_per_step_nor_per_clone(dreamo_model, caplog):
    """A 3-step run calls the model 3 times but warns once; a second run warns again; clones sampled alternately
    (ComfyUI >= 0.14 shares wrapper objects between clones) each warn once per run of their own."""
    _, m = dreamo_model()
    calls = []
    counted = m.clone()
    counted.set_model_unet_function_wrapper(lambda apply, args: calls.append(1) or apply(args["input"], args["timestep"],
                                                                                          **args["c"]))
    with caplog.at_level(logging.WARNING, logger="DreamO"):
        ksample(counted, h.guided_positive())
        assert len(calls) == 3 and len(warnings_of(caplog, WITHOUT_APPLY)) == 1
        ksample(counted, h.guided_positive())
        assert len(warnings_of(caplog, WITHOUT_APPLY)) == 2
        a, b = m.clone(), m.clone()
        for i, clone in enumerate((a, b, a, b)):
            ksample(clone, h.guided_positive(), steps=2)
            assert len(warnings_of(caplog, WITHOUT_APPLY)) == 3 + i
    record = warnings_of(caplog, WITHOUT_APPLY)[0]
    assert record.getMessage().startswith("Load DreamO LoRA: ")


def test_applied_model_samples_without_warning_and_base_model_without_check(dreamo_model, caplog):
    base, m = dreamo_model()
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=h.random_refs(h.REF_SHAPES[:1], [1]))
    with caplog.at_level(logging.WARNING, logger="DreamO"):
        ksample(m2, pos)
        ksample(base, h.guided_positive())  # no DreamO: nothing of ours runs
    assert not [r for r in caplog.records if r.name == "DreamO"]
    assert not base.get_wrappers("outer_sample", "dreamo") and m.get_wrappers("outer_sample", "dreamo")
    assert m2 is m  # Apply adds nothing to the model: Load DreamO LoRA's model samples DreamO


def test_negative_references_refused_before_any_step_and_allowed_at_cfg_1(dreamo_model):
    """With cfg 1 ComfyUI never runs the negative prompt, so Apply's conditioning there cannot change the image;
    with cfg 2 the run is refused before the first model call."""
    _, m = dreamo_model()
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=h.random_refs(h.REF_SHAPES[:1], [1]))
    calls = []
    counted = m2.clone()
    counted.set_model_unet_function_wrapper(lambda apply, args: calls.append(1) or apply(args["input"], args["timestep"],
                                                                                          **args["c"]))
    import nodes

    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    with pytest.raises(ValueError, match="NEGATIVE conditioning carries 1 DreamO reference"):
        nodes.common_ksampler(counted, 7, 2, 2.0, "euler", "simple", pos, pos, latent)
    assert calls == []
    same = nodes.common_ksampler(counted, 7, 2, 1.0, "euler", "simple", pos, pos, latent)[0]["samples"]
    plain = nodes.common_ksampler(counted, 7, 2, 1.0, "euler", "simple", pos, h.conditioning(30), latent)[0]["samples"]
    assert torch.equal(same, plain)


@pytest.mark.parametrize("dreamo_items", [[False], [True, False], [False, True]],
                         ids=["plain-only", "batched", "batched-reversed"])
def test_wrapper_refuses_reference_latents_on_items_without_dreamo(dreamo_model, dreamo_items):
    """The DIFFUSION_MODEL wrapper's backstop for what the run check cannot read (ReferenceLatent on a negative,
    a guider with other cond names): any call whose items without a DreamO layout carry reference latents
    (ComfyUI batches conds only with references of the same shapes, so a mixed batch shares them)."""
    W = h.pack("nodes.runtime.wrapper")
    _, m = dreamo_model()
    _, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(),
                        references=h.random_refs([(4, 4)], [1]))

    class Executor:
        class_obj = m.model.diffusion_model

        def __call__(self, *args, **kwargs):
            return "ran"

    x = torch.zeros(len(dreamo_items), 16, 4, 4)
    options = h.dreamo_call_options(m, [pos if d else None for d in dreamo_items])
    with pytest.raises(ValueError, match=r"^Apply DreamO Conditioning: a prompt reaching the sampler carries 1 "
                                         r"reference latent\(s\) but no DreamO layout"):
        W.dreamo_forward_wrapper(Executor(), x, "t", "ctx", transformer_options=options,
                                 ref_latents=[torch.zeros(1, 16, 4, 4)], ref_latents_method="uxo")
    plain_without = W.dreamo_forward_wrapper(Executor(), x[:1], "t", "ctx",
                                             transformer_options=h.dreamo_call_options(m, [None]), ref_latents=None)
    assert plain_without == "ran"
