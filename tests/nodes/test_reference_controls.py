"""DreamO Reference Options: strength (attention key bias), step range and placement box, on the real ComfyUI."""

import math

import pytest
import torch

from bench import comfy_harness as h
from bench.comfy_harness.hand_forward import hand_ids, hand_velocity

NOISE = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
TEXT_TOKENS, TARGET_TOKENS = 5, 16  # h.conditioning tokens; 8x8 latent -> 4x4 tokens


def options(refs, index, **kw):
    return h.run_node("DreamO_ReferenceOptions", references=refs, index=index, **kw)[0]


def denoised(m, refs, pos=None):
    m2, pos2 = h.run_node("DreamO_ApplyConditioning", model=m, positive=pos or h.guided_positive(), references=refs)
    return h.denoise_once(m2, pos2, h.conditioning(30), NOISE, h.SIGMA, cfg=1.0)


def hand_denoised(dm, cap, refs, **kw):
    t = h.tiny_tables()
    pos = h.guided_positive()
    v = hand_velocity(dm, cap.x, h.SIGMA, pos[0][0], pos[0][1]["pooled_output"], h.GUIDANCE,
                      [r.latent for r in refs.refs], refs.indices,
                      t["dreamo_task_embedding.weight"], t["dreamo_idx_embedding.weight"], **kw)
    return cap.x - h.SIGMA * v


def test_strength_one_is_bit_identical(dreamo_model):
    _, m = dreamo_model()
    refs = h.random_refs(h.REF_SHAPES[:2], [1, 2])
    plain = denoised(m, refs).denoised
    same = denoised(m, options(options(refs, 1, strength=1.0), 2, strength=1.0, start_percent=0.0)).denoised
    assert torch.equal(plain, same)


def test_strength_zero_equals_no_references(dreamo_model):
    base, m = dreamo_model()
    refs = h.random_refs(h.REF_SHAPES[:2], [1, 2])
    off = options(options(refs, 1, strength=0.0), 2, strength=0.0)
    cap = denoised(m, off)
    none = h.dreamo_refs([])
    want = hand_denoised(base.model.diffusion_model, cap, none)  # target still gets task[1]
    assert (cap.denoised - want).abs().max().item() <= 1e-5
    assert (denoised(m, refs).denoised - want).abs().max().item() > 1e-3  # the references do matter


def test_strength_two_equals_hand_bias(dreamo_model):
    base, m = dreamo_model()
    refs = h.random_refs(h.REF_SHAPES[:2], [1, 2])  # ref 1: 4x3 = 12 tokens, ref 2: 2x2 = 4 tokens
    cap = denoised(m, options(refs, 1, strength=2.0))
    bias = torch.tensor([0.0] * (TEXT_TOKENS + TARGET_TOKENS) + [math.log(2.0)] * 12 + [0.0] * 4)
    want = hand_denoised(base.model.diffusion_model, cap, refs, attn_mask=bias.view(1, 1, 1, -1))
    assert (cap.denoised - want).abs().max().item() <= 1e-5
    assert (cap.denoised - hand_denoised(base.model.diffusion_model, cap, refs)).abs().max().item() > 1e-4


def ksample(model, refs, steps=4):
    import nodes

    m2, pos = h.run_node("DreamO_ApplyConditioning", model=model, positive=h.guided_positive(), references=refs)
    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    (out,) = nodes.common_ksampler(m2, 7, steps, 1.0, "euler", "simple", pos, h.conditioning(30), latent)
    return out["samples"]


def test_step_range_differs_from_always_and_never(dreamo_model):
    _, m = dreamo_model()
    refs = h.random_refs(h.REF_SHAPES[:1], [1])
    always = ksample(m, refs)
    never = ksample(m, options(refs, 1, strength=0.0))
    first_half = ksample(m, options(refs, 1, start_percent=0.0, end_percent=0.5))
    second_half = ksample(m, options(refs, 1, start_percent=0.5, end_percent=1.0))
    for a, b in [(first_half, always), (first_half, never), (second_half, always), (second_half, never),
                 (first_half, second_half)]:
        assert (a - b).abs().max().item() > 1e-5
    assert torch.equal(ksample(m, options(refs, 1, start_percent=0.0, end_percent=1.0)), always)


def test_step_range_switches_by_sigma(dreamo_model):
    """Active while percent_to_sigma(end) <= sigma <= percent_to_sigma(start): the call at sigma 0.7 lies
    between the model's sigmas at 20 % and 60 % of the schedule."""
    _, m = dreamo_model()
    sampling = m.get_model_object("model_sampling")
    assert sampling.percent_to_sigma(0.6) < h.SIGMA < sampling.percent_to_sigma(0.2)
    refs = h.random_refs(h.REF_SHAPES[:1], [1])
    never = denoised(m, options(refs, 1, strength=0.0)).denoised
    always = denoised(m, refs).denoised
    assert not torch.equal(never, always)
    for start, end, want in [(0.0, 0.2, never), (0.6, 1.0, never), (0.2, 0.6, always), (0.0, 0.6, always)]:
        assert torch.equal(denoised(m, options(refs, 1, start_percent=start, end_percent=end)).denoised, want)


@pytest.mark.parametrize(("kw", "message"), [
    (dict(strength=-0.5), "strength"),
    (dict(start_percent=0.7, end_percent=0.3), "start_percent"),
    (dict(index=4), "no reference with index 4"),
    (dict(use_box=True, box_x=0.6, box_w=0.6), "box"),
])
def test_bad_options_name_the_node(kw, message):
    refs = h.random_refs(h.REF_SHAPES[:1], [1])
    with pytest.raises(ValueError, match=f"DreamO Reference Options.*{message}"):
        options(refs, **{"index": 1, **kw})


def test_existing_mask_is_merged_or_rejected():
    C = h.pack("dreamo_core.conditioning.reference_strength")
    bias = torch.tensor([0.0, 0.0, -1.0]).view(1, 1, 1, 3)
    keep = torch.tensor([[True, False, True]] * 3)  # [L, L] bool keep-mask
    merged = C.merged_mask(keep, bias)
    assert merged.shape == (1, 1, 3, 3)
    assert torch.equal(merged[0, 0, 0], torch.tensor([0.0, C.MASKED, -1.0]))
    with pytest.raises(ValueError, match="Apply DreamO Conditioning.*attention mask of shape"):
        C.merged_mask(torch.zeros(1, 2, 2), bias, "Apply DreamO Conditioning")


def test_box_maps_reference_ids_and_default_is_unchanged(dreamo_model):
    _, m = dreamo_model()
    refs = h.random_refs(h.REF_SHAPES[:2], [1, 2])  # ref 1: 4x3 tokens, ref 2: 2x2 tokens; target 4x4
    boxed = options(refs, 2, use_box=True, box_x=0.5, box_y=0.0, box_w=0.5, box_h=0.5)
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=boxed)
    with h.seen_position_ids(m2) as ids:
        h.denoise_once(m2, pos, h.conditioning(30), NOISE, h.SIGMA, cfg=1.0)
    seen = [t[0, 5:] for t in ids]  # after the 5 text tokens of h.conditioning
    # the 2x2 ref in the top-right quarter (2x2 tokens) of the 4x4 target: rows 0, 1 and cols 2, 3 exactly
    want = hand_ids((4, 4), [(4, 3), (2, 2)])
    want[28:] = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.0, 1.0, 2.0], [0.0, 1.0, 3.0]])
    assert torch.equal(seen[0], want)
    # an unboxed options call keeps DreamO's forward bit for bit
    assert torch.equal(denoised(m, options(refs, 2, strength=1.0)).denoised, denoised(m, refs).denoised)


@pytest.mark.parametrize("sigma", [0.5, 0.99], ids=["inside-range", "before-start"])
def test_cli_reference_and_nodes_give_the_same_tokens_ids_and_bias(tmp_path, sigma):
    """One reference with index 2, strength 0.5, steps 20-80 % and a box, set once through the ``dreamo`` CLI's
    --ref options and once through Encode -> Reference Options -> Apply: the embedding rows, the position ids and
    the attention bias reaching the model are the same."""
    import numpy as np
    from PIL import Image

    cli = h.pack("dreamo_core.generator.cli")
    fwd = h.pack("dreamo_core.generator.flux_forward")
    emb_mod = h.pack("dreamo_core.conditioning.embeddings")
    Image.fromarray(np.full((32, 48, 3), 128, dtype=np.uint8)).save(tmp_path / "ref.png")
    ref = cli.parse_ref([str(tmp_path / "ref.png"), "index=2", "strength=0.5", "start=0.2", "end=0.8",
                         "box=0.5,0,0.5,0.5"])
    t = h.tiny_tables()
    tables = emb_mod.ConditionEmbeddings(t["dreamo_task_embedding.weight"], t["dreamo_idx_embedding.weight"])
    latent = torch.randn(1, 16, 4, 6, generator=torch.Generator().manual_seed(3))  # 2x3 reference tokens
    context = torch.randn(1, TEXT_TOKENS, h.CTX)
    x = torch.zeros(1, 16, 8, 8)  # 4x4 target tokens

    # the nodes
    refs = h.dreamo_refs([latent], [2])
    refs = options(refs, 2, strength=ref.strength, start_percent=ref.start_percent, end_percent=ref.end_percent,
                   use_box=True, box_x=ref.box.x, box_y=ref.box.y, box_w=ref.box.w, box_h=ref.box.h)
    model = h.with_dreamo_tables(h.tiny_flux())
    model.set_attachments("dreamo_embeddings", tables)
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=model, positive=h.guided_positive(), references=refs)
    seen = {}

    class Executor:
        class_obj = model.model.diffusion_model

        def __call__(self, *args, **kwargs):
            seen.update(options=args[7], kwargs=kwargs)

    options_in = h.dreamo_call_options(m2, [pos], sigma)
    h.pack("nodes.runtime.wrapper").dreamo_forward_wrapper(Executor(), x, "t", context, "y", "g", [latent], None,
                                                           options_in, ref_latents_method="uxo")
    patch = seen["options"]["patches"]["post_input"][0]
    node_ids = patch({"img": torch.zeros(1, 22, h.HIDDEN), "img_ids": torch.zeros(1, 22, 3)})["img_ids"][0]
    node_bias = seen["kwargs"].get("attention_mask")

    # the CLI's reference through the generator's own input builder, at the same sigma of its schedule
    tokens = torch.zeros(1, 6, 64)
    control = ref.control(h.pack("dreamo_core.generator.schedule").flux_mu(16))
    inputs = fwd.dreamo_inputs(torch.zeros(1, 16, 64), (4, 4), [fwd.ReferenceTokens(tokens, (2, 3), ref.index, ref.box)],
                               tables, TEXT_TOKENS, torch.float32, strengths=[control.strength_at(sigma)])
    assert torch.equal(patch.emb[0], inputs.embedding)
    assert torch.equal(node_ids, inputs.img_ids)
    assert node_bias is not None and inputs.bias is not None and torch.equal(node_bias, inputs.bias)
    masked = h.pack("dreamo_core.conditioning.reference_strength").MASKED
    want_ref_bias = math.log(0.5) if sigma == 0.5 else masked
    assert node_bias[0, 0, 0, -6:].tolist() == pytest.approx([want_ref_bias] * 6)
    # the 2x3 reference in the top-right quarter (rows 0-1, cols 2-3) of the 4x4 target, edges -0.5..1.5 and
    # 1.5..3.5 in id space: rows at spacing 1 -> 0, 1; three columns at spacing 2/3 -> 1.5 + 1/3, 2.5, 3.5 - 1/3
    want = torch.tensor([[0.0, 11 / 6], [0.0, 2.5], [0.0, 19 / 6], [1.0, 11 / 6], [1.0, 2.5], [1.0, 19 / 6]])
    assert torch.allclose(node_ids[16:, 1:], want, atol=1e-6)
