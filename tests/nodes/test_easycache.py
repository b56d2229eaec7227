"""Core's EasyCache (a caching DIFFUSION_MODEL wrapper that skips model calls) stacked on DreamO: composes."""

import torch

from bench import comfy_harness as h

STEPS = 8


def sample_counting(model, pos):
    """(denoised latent, number of real transformer forwards) of an 8-step euler run through CFGGuider."""
    import comfy.samplers

    calls = []
    handle = model.model.diffusion_model.img_in.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(pos, h.conditioning(30))
        guider.set_cfg(1.0)
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", STEPS)
        noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(3))
        with torch.inference_mode():
            out = guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas,
                                disable_pbar=True, seed=0)
    finally:
        handle.remove()
    return out, len(calls)


def test_easycache_on_dreamo_skips_calls_and_keeps_the_references(dreamo_model):
    import nodes

    easycache = nodes.NODE_CLASS_MAPPINGS.get("EasyCache")
    assert easycache is not None  # core node since before 0.3.64; both CI trees have it
    _, m = dreamo_model()
    dreamo, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(),
                             references=h.random_refs(h.REF_SHAPES[:2], [1, 2]))
    no_refs, pos0 = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive())
    kw = dict(reuse_threshold=0.2, start_percent=0.0, end_percent=1.0, verbose=False)
    cached = easycache.execute(model=dreamo, **kw).result[0]
    full, full_calls = sample_counting(dreamo, pos)
    out, calls = sample_counting(cached, pos)
    assert full_calls == STEPS and 0 < calls < full_calls  # EasyCache really skipped model calls
    assert torch.isfinite(out).all()
    rel = ((out - full).norm() / full.norm()).item()
    other, _ = sample_counting(easycache.execute(model=no_refs, **kw).result[0], pos0)
    assert rel < ((other - full).norm() / full.norm()).item()  # closer to DreamO uncached than DreamO without refs
