"""DreamO forward through the nodes == an independent hand-written forward on the same tiny weights."""

import pytest
import torch

from bench import comfy_harness as h
from bench.comfy_harness.hand_forward import hand_ids, hand_velocity


def expected_denoised(dm, cap, pos, refs, with_embedding=True):
    t = h.tiny_tables()
    v = hand_velocity(dm, cap.x, h.SIGMA, pos[0][0], pos[0][1]["pooled_output"], h.GUIDANCE,
                      [r.latent for r in refs.refs], refs.indices,
                      t["dreamo_task_embedding.weight"], t["dreamo_idx_embedding.weight"], with_embedding)
    return cap.x - h.SIGMA * v


@pytest.mark.parametrize(("shapes", "indices"), [([], []), (h.REF_SHAPES[:1], [1]), (h.REF_SHAPES[:2], [1, 2]),
                                                 (h.REF_SHAPES, [1, 2, 3]), (h.REF_SHAPES[:1], [2])],
                         ids=["0refs", "1ref", "2refs", "3refs", "slot2"])
def test_positive_pass_matches_hand_forward(dreamo_model, shapes, indices):
    base, m = dreamo_model()
    refs = h.random_refs(shapes, indices)
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=refs)
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    cap = h.denoise_once(m2, pos, h.conditioning(30), noise, h.SIGMA, cfg=1.0)
    want = expected_denoised(base.model.diffusion_model, cap, pos, refs)
    assert (cap.denoised - want).abs().max().item() <= 1e-5
    # the check can fail: without the embedding the result is clearly different
    assert (cap.denoised - expected_denoised(base.model.diffusion_model, cap, pos, refs, False)).abs().max() > 1e-3


@pytest.mark.parametrize("n_refs", [0, 2], ids=["batched-with-negative", "separate-passes"])
def test_negative_pass_has_no_embedding(dreamo_model, n_refs):
    """cfg=2 gives 2*cond - uncond; with 0 refs ComfyUI batches cond+uncond in one call (cond_or_uncond)."""
    base, m = dreamo_model()
    refs = h.random_refs(h.REF_SHAPES[:n_refs], list(range(1, n_refs + 1)))
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=refs)
    neg = h.conditioning(30)
    neg[0][1]["guidance"] = h.GUIDANCE
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    with h.seen_position_ids(m2) as ids:
        cap = h.denoise_once(m2, pos, neg, noise, h.SIGMA, cfg=2.0)
    seen = [t.shape[0] for t in ids]
    dm = base.model.diffusion_model
    cond = expected_denoised(dm, cap, pos, refs)
    none = h.dreamo_refs([])
    uncond = expected_denoised(dm, cap, neg, none, with_embedding=False)
    assert (cap.denoised - (2 * cond - uncond)).abs().max().item() <= 2e-5
    assert seen == ([2] if n_refs == 0 else [1, 1])  # one batched call vs two calls


def test_ids_equal_official_and_uxo_in_float32(loras_dir):
    """ComfyUI's own "uxo" ids (captured before our patch rewrites them) == DreamO's diagonal ids."""
    pos_ids = h.pack("dreamo_core.conditioning.position_ids")
    base = h.tiny_flux()
    cond = h.guided_positive()
    cond[0][1].update(reference_latents=[torch.zeros(1, 16, *s) for s in h.REF_SHAPES], reference_latents_method="uxo")
    seen = []
    m = base.clone()
    m.set_model_post_input_patch(lambda d: seen.append(d["img_ids"][0].clone()) or d)
    h.denoise_once(m, cond, h.conditioning(30), torch.zeros(1, 16, 8, 8), h.SIGMA, cfg=1.0)
    grids = [(a // 2, b // 2) for a, b in h.REF_SHAPES]
    assert torch.equal(seen[0], hand_ids((4, 4), grids))
    assert torch.equal(pos_ids.dreamo_position_ids((4, 4), grids), hand_ids((4, 4), grids))


def test_bf16_ids_above_256_follow_the_official_rounding(dreamo_model):
    """Official ids: float32 arange cast to the compute dtype (bf16). ComfyUI builds its ids in bf16 with
    linspace (<= 0.3.71) or in float32 (>= 0.3.72); either way DreamO's ids must carry the official rounding."""
    base, m = dreamo_model(dtype=torch.bfloat16)
    refs = h.random_refs([(4, 20)], [1])  # target 1x260 tokens, ref 2x10 at cols 260..269
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=refs)
    with h.seen_position_ids(m2) as ids:
        h.denoise_once(m2, pos, h.conditioning(30), torch.zeros(1, 16, 2, 520), h.SIGMA, cfg=1.0)
    seen = [t[0, 5:] for t in ids]  # after the 5 text tokens of h.conditioning
    official = hand_ids((1, 260), [(2, 10)]).to(torch.bfloat16).float()
    assert torch.equal(seen[0].float(), official)
    assert not torch.equal(official, hand_ids((1, 260), [(2, 10)]))  # the rounding is real: 261 -> 260, ...
    dm = base.model.diffusion_model
    _, comfy_ids = dm.process_img(torch.zeros(1, 16, 4, 20, dtype=torch.bfloat16), h_offset=2, w_offset=520)
    assert seen[0].dtype == comfy_ids.dtype  # ComfyUI's own ids dtype of this version is kept
    assert not torch.equal(comfy_ids[0].float(), official[260:])  # what we had to correct


def test_fp8_manual_cast_runs_and_keeps_tables(dreamo_model):
    base, m = dreamo_model(dtype=torch.float8_e4m3fn, compute=torch.bfloat16)
    refs = h.random_refs(h.REF_SHAPES[:2], [1, 2])
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=refs)
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    cap = h.denoise_once(m2, pos, h.conditioning(30), noise, h.SIGMA, cfg=1.0)
    assert cap.denoised.dtype == torch.float32 and torch.isfinite(cap.denoised).all()
    # the tables never follow the model's float8 cast: they ride as an attachment, and ComfyUI casts only wrappers
    # and patches that have .to (ours are plain functions)
    assert m2.get_attachment("dreamo_embeddings").task.dtype == torch.float32
    assert not any(hasattr(w, "to") for kind in ("diffusion_model", "sampler_sample", "outer_sample")
                   for w in m2.get_wrappers(kind, "dreamo"))
    same_latents = [[pos[0][0], {k: v for k, v in pos[0][1].items() if k != "hooks"}]]  # without Apply's guard
    plain = h.denoise_once(base, same_latents, h.conditioning(30), noise, h.SIGMA, cfg=1.0)  # no DreamO
    assert not torch.equal(plain.denoised, cap.denoised)


def test_inputs_are_not_mutated_and_base_output_unchanged(dreamo_model):
    base, m = dreamo_model()
    pos = h.guided_positive()
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    before = h.denoise_once(base, pos, h.conditioning(30), noise, h.SIGMA, cfg=1.0).denoised
    keys_before = set(pos[0][1])
    m2, pos2 = h.run_node("DreamO_ApplyConditioning", model=m, positive=pos, references=h.random_refs(h.REF_SHAPES[:1], [1]))
    h.denoise_once(m2, pos2, h.conditioning(30), noise, h.SIGMA, cfg=1.0)
    assert set(pos[0][1]) == keys_before and "reference_latents" in pos2[0][1]
    # Apply changes no model: it returns the model it got (Load DreamO LoRA's, which samples DreamO)
    assert m2 is m and base.get_wrappers("diffusion_model", "dreamo") == []
    assert base.get_attachment("dreamo_embeddings") is None
    # a model that only went through Load DreamO LoRA (no Apply) is bit-identical to the base model
    assert torch.equal(h.denoise_once(m, pos, h.conditioning(30), noise, h.SIGMA, cfg=1.0).denoised, before)
    assert torch.equal(h.denoise_once(base, pos, h.conditioning(30), noise, h.SIGMA, cfg=1.0).denoised, before)


def test_reapplying_replaces_references(dreamo_model):
    _, m = dreamo_model()
    one = h.random_refs(h.REF_SHAPES[:1], [1])
    m2, pos2 = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=h.random_refs(h.REF_SHAPES, [1, 2, 3]))
    m3, pos3 = h.run_node("DreamO_ApplyConditioning", model=m2, positive=pos2, references=one)
    assert len(pos3[0][1]["reference_latents"]) == 1 and len(pos2[0][1]["reference_latents"]) == 3
    assert len(pos3[0][1]["dreamo_layout"]) == 1 and len(m3.get_wrappers("diffusion_model", "dreamo")) == 1
    direct_model, direct_pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=one)
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    a = h.denoise_once(m3, pos3, h.conditioning(30), noise, h.SIGMA, cfg=1.0).denoised
    b = h.denoise_once(direct_model, direct_pos, h.conditioning(30), noise, h.SIGMA, cfg=1.0).denoised
    assert torch.equal(a, b)
