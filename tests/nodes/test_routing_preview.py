"""DreamO Routing Recorder / Preview on the real ComfyUI: bit-identical sampling, maps vs a hand computation, errors."""

import pytest
import torch

from bench import comfy_harness as h

NOISE = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(7))
TEXT, TARGET = 5, 16  # h.conditioning tokens; 8x8 latent -> 4x4 tokens


def applied(dreamo_model):
    _, m = dreamo_model()
    refs = h.random_refs(h.REF_SHAPES[:2], [1, 2])  # ref 1: 12 tokens, ref 2: 4 tokens
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=refs)
    return m2, pos


def test_recording_is_bit_identical_and_maps_match_hand_computation(dreamo_model):
    m, pos = applied(dreamo_model)
    plain = h.denoise_once(m, pos, h.conditioning(30), NOISE, h.SIGMA, cfg=1.0).denoised
    seen = []

    def spy(func, q, k, *args, **kwargs):  # an existing override: the recorder must chain it
        seen.append((q.detach().clone(), k.detach().clone()))
        return func(q, k, *args, **kwargs)

    spied = m.clone()
    spied.model_options["transformer_options"]["optimized_attention_override"] = spy
    rec_model, recorder = h.run_node("DreamO_RoutingRecorder", model=spied, blocks="all")
    out = h.denoise_once(rec_model, pos, h.conditioning(30), NOISE, h.SIGMA, cfg=1.0).denoised
    assert torch.equal(out, plain)
    assert len(seen) == 2 and recorder.latest.count == 2  # one double + one single block
    img = slice(TEXT, TEXT + TARGET)
    refs = [slice(TEXT + TARGET, TEXT + TARGET + 12), slice(TEXT + TARGET + 12, TEXT + TARGET + 16)]
    want = torch.zeros(2, TARGET)
    for q, k in seen:  # softmax over the image keys, mean over ref tokens and heads, x N (uniform -> 1)
        for i, sl in enumerate(refs):
            logits = q[0, :, sl].float() @ k[0, :, img].float().transpose(-1, -2) / q.shape[-1] ** 0.5
            want[i] += logits.softmax(-1).mean(dim=(0, 1)) * TARGET
    assert torch.allclose(recorder.maps().reshape(2, TARGET), want / 2, atol=1e-5)

    image = torch.rand(1, 64, 64, 3)
    masks, overlay = h.run_node("DreamO_RoutingPreview", routing=recorder, image=image, opacity=0.5)
    assert masks.shape == (2, 64, 64) and overlay.shape == (2, 64, 64, 3)
    assert masks.min() == 0.0 and masks.max() == 1.0
    assert torch.allclose(overlay[0][masks[0] == 0], image[0][masks[0] == 0])  # zero response: image unchanged


def test_block_choice_and_errors(dreamo_model):
    m, pos = applied(dreamo_model)
    rec_model, recorder = h.run_node("DreamO_RoutingRecorder", model=m, blocks="1")
    with pytest.raises(ValueError, match="no sampling run has used the model from DreamO Routing Recorder yet"):
        h.run_node("DreamO_RoutingPreview", routing=recorder, image=torch.rand(1, 8, 8, 3))
    h.denoise_once(rec_model, pos, h.conditioning(30), NOISE, h.SIGMA, cfg=1.0)
    assert recorder.latest.count == 1  # only the single block
    with pytest.raises(ValueError, match="blocks must be 'all' or comma-separated"):
        h.run_node("DreamO_RoutingRecorder", model=m, blocks="first")
    base, _ = dreamo_model()
    with pytest.raises(ValueError, match="model: this model is not a DreamO model"):
        h.run_node("DreamO_RoutingRecorder", model=base, blocks="all")
    with pytest.raises(ValueError, match=r"blocks \[99\]: this model has blocks 0-1"):
        h.run_node("DreamO_RoutingRecorder", model=m, blocks="99")
    # a run whose prompt has no DreamO references records nothing, and the Preview says why
    _, bare = dreamo_model()
    no_refs, pos0 = h.run_node("DreamO_ApplyConditioning", model=bare, positive=h.guided_positive())
    rec0, recorder0 = h.run_node("DreamO_RoutingRecorder", model=no_refs, blocks="all")
    h.denoise_once(rec0, pos0, h.conditioning(30), NOISE, h.SIGMA, cfg=1.0)
    with pytest.raises(ValueError, match="no routing maps were recorded: the last sampling run of the recorder's "
                                         "model had no DreamO references in its prompt"):
        h.run_node("DreamO_RoutingPreview", routing=recorder0, image=torch.rand(1, 8, 8, 3))
    # a range the run's step lies outside records nothing either (sigma 0.7 lies at 20-60 % of this schedule)
    rec1, recorder1 = h.run_node("DreamO_RoutingRecorder", model=m, blocks="all", start_percent=0.6, end_percent=1.0)
    h.denoise_once(rec1, pos, h.conditioning(30), NOISE, h.SIGMA, cfg=1.0)
    with pytest.raises(ValueError, match="none of the last run's steps lay between the recorder's start_percent"):
        h.run_node("DreamO_RoutingPreview", routing=recorder1, image=torch.rand(1, 8, 8, 3))


def test_clones_sampled_alternately_never_mix_their_maps(dreamo_model):
    """ComfyUI >= 0.14 shares wrapper objects between clones: each run must record only itself. The old recorder
    keyed runs by id(sample_sigmas), which Python reuses, and summed one run's maps into the next."""
    m, pos = applied(dreamo_model)
    rec_model, recorder = h.run_node("DreamO_RoutingRecorder", model=m, blocks="all")
    a, b = rec_model.clone(), rec_model.clone()
    noises = {"a": NOISE, "b": torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(99))}
    alone = {}
    for name, noise in noises.items():  # each clone's maps from a fresh recorder and a single run
        fresh_model, fresh = h.run_node("DreamO_RoutingRecorder", model=m, blocks="all")
        h.denoise_once(fresh_model, pos, h.conditioning(30), noise, h.SIGMA, cfg=1.0)
        alone[name] = fresh.maps()
    assert not torch.allclose(alone["a"], alone["b"])  # the two runs really differ
    for name, clone in (("a", a), ("b", b), ("a", a), ("b", b)):
        h.denoise_once(clone, pos, h.conditioning(30), noises[name], h.SIGMA, cfg=1.0)
        assert recorder.latest.count == 2  # one double + one single block of THIS run only
        assert torch.allclose(recorder.maps(), alone[name], atol=1e-6), name
