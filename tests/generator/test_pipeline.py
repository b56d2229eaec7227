"""DreamOGenerator on the embedded tiny FLUX: call structure matches the official pipeline."""

import math

import pytest
import torch

from dreamo_core.conditioning.reference_strength import MASKED
from dreamo_core.generator.loading import load_tiny_generator
from dreamo_core.generator.pipeline import GenerationSettings, ReferenceInput
from dreamo_core.generator.schedule import flux_mu, percent_to_sigma

SMALL = dict(width=64, height=64, steps=3, ref_res=256)


@pytest.fixture(scope="module")
def gen():
    return load_tiny_generator(seed=0)


def disc_ref(index=None, task="ip", size=64):
    img = torch.ones(size, size, 3)
    img[16:48, 16:48, 1:] = 0.0
    return ReferenceInput(img, task, index)


class CallSpy:
    """Records the sequence length, guidance and whether the x_embedder hook is active on every transformer call."""

    def __init__(self, gen):
        self.calls = []
        self.gen = gen

    def __enter__(self):
        def pre(_mod, _args, kwargs):
            hooks = len(self.gen.transformer.x_embedder._forward_hooks)
            self.calls.append((kwargs["hidden_states"].shape[1], float(kwargs["guidance"][0]), hooks))

        self.handle = self.gen.transformer.register_forward_pre_hook(pre, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_same_seed_same_image_other_seed_differs(gen):
    a = gen.generate("a cat", [disc_ref()], GenerationSettings(seed=1, **SMALL))
    b = gen.generate("a cat", [disc_ref()], GenerationSettings(seed=1, **SMALL))
    c = gen.generate("a cat", [disc_ref()], GenerationSettings(seed=2, **SMALL))
    assert a.shape == (64, 64, 3) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@torch.no_grad()
def official_loop(gen, prompt, ref_image, s):
    """The official DreamOPipeline.__call__ written out (one reference, no true CFG): reference through the VAE's
    posterior mode, (z - shift) * scale, 2x2 packing; CPU noise; sigmas linspace(1, 1/N, N) with the dynamic shift
    of the noisy tokens; Euler steps of the scheduler; unpack, unscale, decode."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from einops import rearrange

    from dreamo_core.conditioning.reference_images import prepare_reference
    from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward

    vae, cfg = gen.vae, gen.vae.config
    px = prepare_reference(ref_image, "ip", s.ref_res).pixels
    z = (vae.encode(px.permute(2, 0, 1)[None] * 2 - 1).latent_dist.mode() - cfg.shift_factor) * cfg.scaling_factor
    ref = ReferenceTokens(rearrange(z, "b c (h p) (w q) -> b (h w) (c p q)", p=2, q=2), (z.shape[2] // 2, z.shape[3] // 2), 1)
    embeds, pooled = gen.prompt_encoder.encode(prompt)
    noise = torch.randn(1, 16, s.height // 8, s.width // 8, generator=torch.Generator("cpu").manual_seed(s.seed))
    latents = rearrange(noise, "b c (h p) (w q) -> b (h w) (c p q)", p=2, q=2)
    rows, cols = s.height // 16, s.width // 16
    mu = 0.5 + (rows * cols - 256) * (1.15 - 0.5) / (4096 - 256)
    sched = FlowMatchEulerDiscreteScheduler.from_config(gen.scheduler.config)
    sched.set_timesteps(sigmas=[1 - i / s.steps for i in range(s.steps)], mu=mu)
    for t in sched.timesteps:
        v = dreamo_transformer_forward(gen.transformer, latents, (rows, cols), [ref], (t / 1000).expand(1),
                                       torch.full((1,), s.guidance), pooled, embeds, gen.tables)
        latents = sched.step(v, t, latents, return_dict=False)[0]
    z = rearrange(latents, "b (h w) (c p q) -> b c (h p) (w q)", h=rows, w=cols, p=2, q=2)
    x = vae.decode(z / cfg.scaling_factor + cfg.shift_factor, return_dict=False)[0]
    return ((x[0].permute(1, 2, 0) + 1) / 2).clamp(0, 1)


def test_generate_equals_the_official_loop_written_out(gen):
    s = GenerationSettings(seed=1, **SMALL)
    ref = disc_ref()
    got = gen.generate("a cat", [ref], s)
    assert torch.allclose(got, official_loop(gen, "a cat", ref.image, s), atol=1e-5)
    plain = gen.generate("a cat", [], s)
    assert (plain - got).abs().max() > 1e-3  # the reference is not ignored


def test_strength_acts_only_inside_its_step_range(gen):
    """start/end percent map to sigmas of the generator's own shifted schedule: a reference active from 50 %
    gets the bias only on the later steps; strength 1 never adds a mask."""
    seen = []

    def pre(_mod, _args, kwargs):
        mask = (kwargs.get("joint_attention_kwargs") or {}).get("attention_mask")
        seen.append(None if mask is None else round(float(mask[0, 0, 0, -1]), 4))  # bias on the last reference key

    handle = gen.transformer.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        ref = disc_ref()
        ref.strength, ref.start_percent = 0.5, 0.5
        gen.generate("a cat", [ref], GenerationSettings(seed=1, **{**SMALL, "steps": 4}))
        late, seen[:] = list(seen), []
        gen.generate("a cat", [disc_ref()], GenerationSettings(seed=1, **{**SMALL, "steps": 4}))
    finally:
        handle.remove()
    sigmas = [float(t) / 1000 for t in gen.scheduler.timesteps]  # the shifted schedule of the last run
    start = percent_to_sigma(0.5, flux_mu(16))
    want = [round(math.log(0.5), 4) if sg <= start else MASKED for sg in sigmas]
    assert late == want and MASKED in want and round(math.log(0.5), 4) in want, (late, sigmas, start)
    assert seen == [None] * 4


def test_sequence_layout_guidance_and_true_cfg_negative_pass(gen):
    s = GenerationSettings(seed=0, guidance=4.5, first_step_guidance=2.0, true_cfg=3.0, negative_prompt="blurry",
                           neg_guidance=3.5, **SMALL)
    with CallSpy(gen) as spy:
        gen.generate("a cat", [disc_ref(), disc_ref(index=3)], s)
    target = (64 // 16) ** 2
    ref_tokens = (256 // 16) ** 2  # 64x64 input area-resized to 256x256
    pos = spy.calls[0::2]
    neg = spy.calls[1::2]
    assert len(spy.calls) == 2 * s.steps
    assert all(n == target + 2 * ref_tokens and hooks == 1 for n, _, hooks in pos)
    assert [g for _, g, _ in pos] == [2.0, 4.5, 4.5]  # first-step guidance, then guidance
    assert all(n == target and g == 3.5 and hooks == 0 for n, g, hooks in neg)  # no refs, no embedding


def test_bad_inputs_are_named(gen):
    with pytest.raises(ValueError, match="width must be a multiple of 16"):
        gen.generate("x", [], GenerationSettings(width=100, height=64, steps=1))
    with pytest.raises(ValueError, match="reference index 10 is out of range"):
        gen.generate("x", [disc_ref(index=10)], GenerationSettings(**SMALL))
    with pytest.raises(ValueError, match=r"reference index 2 is used twice"):
        gen.generate("x", [disc_ref(index=2), disc_ref(index=2)], GenerationSettings(**SMALL))
    with pytest.raises(ValueError, match=r"\[ref#2\] has no reference"):
        gen.generate("the cat from [ref#2]", [disc_ref()], GenerationSettings(**SMALL))
    with pytest.raises(ValueError, match="task must be one of"):
        gen.generate("x", [disc_ref(task="tryon")], GenerationSettings(**SMALL))


def test_tiny_prompt_encoder_takes_placeholder_rows_for_exact_placeholders():
    """A word that is exactly [ref#i] is row i-1 of the placeholder rows; anything else (punctuation attached, no
    rows given) is a hashed word."""
    from dreamo_core.generator.tiny import TinyPromptEncoder

    rows = torch.arange(10 * 32, dtype=torch.float32).reshape(10, 32)
    with_rows, plain = TinyPromptEncoder(placeholder_rows=rows), TinyPromptEncoder()
    embeds = with_rows.encode("a [ref#2] and [ref#2], [ref#9]")[0][0]
    assert torch.equal(embeds[1], rows[1]) and torch.equal(embeds[4], rows[8])
    assert torch.equal(embeds[3], plain.table[plain.token_id("[ref#2],")])
    assert torch.equal(plain.encode("[ref#2]")[0][0, 0], plain.table[plain.token_id("[ref#2]")])
