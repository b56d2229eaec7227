"""Encode Reference (tiny VAE) and the clear errors of Encode / Apply / the run-time wrapper."""

import pytest
import torch

from bench import comfy_harness as h


@pytest.fixture(scope="module")
def vae():
    return h.tiny_vae()


def encode(vae, image, **kw):
    args = dict(task="ip", index=1, resolution=256, invert_mask=False)
    args.update(kw)
    return h.run_node("DreamO_EncodeReference", image=image, vae=vae, **args)[0]


def image(n=1, hh=48, ww=64, seed=0):
    return torch.rand(n, hh, ww, 3, generator=torch.Generator().manual_seed(seed))


def test_batch_becomes_consecutive_indices_and_matches_vae(vae):
    import comfy.utils

    steps = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: steps.append((value, total)))
    try:
        refs = encode(vae, image(2), index=3)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert refs.indices == [3, 4] and steps == [(1, 2), (2, 2)]
    # 64x48 at resolution 256: k = sqrt(256^2 / 3072) -> 295x221 -> floored to multiples of 16: 288x208
    assert refs.refs[0].latent.shape == (1, 16, 208 // 8, 288 // 8) and refs.refs[0].grid == (13, 18)
    assert not torch.equal(refs.refs[0].latent, refs.refs[1].latent)


def test_mask_background_becomes_white(vae):
    mask = torch.zeros(1, 48, 64)
    mask[:, 10:30, 20:40] = 1.0
    img = image()
    got = encode(vae, img, task="id", mask=mask).refs[0].latent  # id: 512x512 crop
    composited = img[0] * mask[0, ..., None] + (1 - mask[0, ..., None])  # background white, by hand
    want = vae.encode(h.pack("dreamo_core.conditioning.reference_images").resize_area(
        composited[:, 8:56], (512, 512)).contiguous()[None])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    inverted = encode(vae, img, task="id", mask=1 - mask, invert_mask=True).refs[0].latent
    torch.testing.assert_close(inverted, got, atol=1e-5, rtol=1e-5)
    unmasked = encode(vae, img, task="id").refs[0].latent
    assert (unmasked - got).abs().max() > 1e-2


@pytest.mark.parametrize(("mask", "invert", "hint"), [
    (torch.zeros(1, 64, 64), False, "invert_mask is off, so 1 = keep: LoadImage's MASK is 1 - alpha"),
    (torch.ones(1, 48, 64), True, "invert_mask is on, so the mask was all ones before inversion"),
], ids=["loadimage-no-alpha", "all-ones-inverted"])
def test_mask_that_selects_nothing_explains_invert_mask(vae, mask, invert, hint):
    """LoadImage gives a 64x64 zeros MASK for an image without alpha: with invert_mask off that used to make the
    whole reference white, silently."""
    with pytest.raises(ValueError, match=r"^DreamO Encode Reference: image 1: mask selects nothing") as e:
        encode(vae, image(), mask=mask, invert_mask=invert)
    assert hint in str(e.value)
    assert len(encode(vae, image(), mask=mask, invert_mask=not invert)) == 1  # the other setting keeps everything


def test_chaining_clones(vae):
    first = encode(vae, image(), index=1)
    second = encode(vae, image(seed=1), index=2, references=first)
    assert len(first) == 1 and second.indices == [1, 2] and second.refs[0] is first.refs[0]


@pytest.mark.parametrize(("kw", "message"), [
    (dict(index=2, references="dup"), "used twice"),
    (dict(index=9, n=2), "out of range"),
    (dict(mask=torch.zeros(2, 48, 64), n=3), "mask batch"),
    (dict(task="pose"), "task must be one of"),
    (dict(n=0), "image: the IMAGE batch is empty (0 images)"),
])
def test_encode_errors(vae, kw, message):
    n = kw.pop("n", 1)
    if kw.get("references") == "dup":
        kw["references"] = encode(vae, image(), index=2)
    with pytest.raises(ValueError, match="Encode Reference") as e:
        encode(vae, image(n), **kw)
    assert message in str(e.value)


def test_four_channel_vae_is_named(vae):
    """An SD VAE used to give a (1, 4, h, w) latent that failed deep inside Flux at sampling time."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    dd = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 1, 1, 1],
              num_res_blocks=1, attn_resolutions=[], dropout=0.0)
    sd_vae = comfy.sd.VAE(sd=h.random_state_dict(AutoencoderKL(embed_dim=4, ddconfig=dd), 0, scale=0.1),
                          config={"params": {"embed_dim": 4, "ddconfig": dd}})
    with pytest.raises(ValueError, match=r"^DreamO Encode Reference: vae: the VAE gives 4-channel latents "
                                         r"\(an SD1\.x/SDXL VAE\), FLUX\.1 needs 16"):
        encode(sd_vae, image())
    assert encode(vae, image()).refs[0].latent.shape[1] == 16


def test_more_references_than_indices(vae):
    refs = encode(vae, image(9), index=1)
    assert refs.indices == list(range(1, 10))
    with pytest.raises(ValueError, match="10 references, but DreamO has only 9"):
        encode(vae, image(), index=1, references=refs)


def dreamo(loras_dir):
    return h.with_dreamo_tables(h.tiny_flux())


def refs_of(shapes, indices):
    return h.dreamo_refs([torch.zeros(1, 16, *s) for s in shapes], indices)


def test_apply_errors(loras_dir):
    with pytest.raises(ValueError, match="Apply DreamO Conditioning: model has no DreamO embeddings"):
        h.run_node("DreamO_ApplyConditioning", model=h.tiny_flux(), positive=h.conditioning(0))
    with pytest.raises(ValueError, match="Apply DreamO Conditioning: references: reference index 1 is used twice"):
        h.run_node("DreamO_ApplyConditioning", model=dreamo(loras_dir), positive=h.conditioning(0),
                   references=refs_of([(4, 4), (4, 4)], [1, 1]))


def run(model, pos, noise=None):
    return h.denoise_once(model, pos, h.conditioning(30), noise if noise is not None else torch.zeros(1, 16, 8, 8), 0.5, 1.0)


def test_runtime_token_mismatch_and_missing_refs(loras_dir):
    m, pos = h.run_node("DreamO_ApplyConditioning", model=dreamo(loras_dir), positive=h.conditioning(0),
                        references=refs_of([(4, 4)], [1]))
    swapped = [[pos[0][0], {**pos[0][1], "reference_latents": [torch.zeros(1, 16, 6, 4)]}]]
    with pytest.raises(ValueError, match="reference 1 \\(index 1\\) has 3x2 tokens at run time, expected 2x2"):
        run(m, swapped)
    dropped = [[pos[0][0], {k: v for k, v in pos[0][1].items() if not k.startswith("reference_latents")}]]
    with pytest.raises(ValueError, match="has 0 reference latent\\(s\\), but its DreamO layout has 1 reference"):
        run(m, dropped)
    other_method = [[pos[0][0], {**pos[0][1], "reference_latents_method": "offset"}]]
    with pytest.raises(ValueError, match="DreamO needs 'uxo'"):
        run(m, other_method)


def test_wrapper_arguments_pass_through_untouched(loras_dir):
    """Keyword and unknown arguments reach Flux._forward unchanged; only transformer_options is a copy."""
    W = h.pack("nodes.runtime.wrapper")
    m, pos = h.run_node("DreamO_ApplyConditioning", model=dreamo(loras_dir), positive=h.conditioning(0))
    seen = {}

    class FakeExecutor:
        class_obj = m.model.diffusion_model

        def __call__(self, *args, **kwargs):
            seen.update(args=args, kwargs=kwargs)
            return "out"

    options = h.dreamo_call_options(m, [pos], patches={"attn1_patch": ["other"]}, extra=1)
    x = torch.zeros(1, 16, 4, 4)
    out = W.dreamo_forward_wrapper(FakeExecutor(), x, "t", "ctx", "y", "g", None, "control", options, future_arg=7)
    assert out == "out" and seen["kwargs"] == {"future_arg": 7} and seen["args"][:7] == (x, "t", "ctx", "y", "g", None, "control")
    new_options = seen["args"][7]
    assert new_options["extra"] == 1 and new_options["patches"]["attn1_patch"] == ["other"]
    assert [type(p) for p in new_options["patches"]["post_input"]] == [W.DreamOEmbeddingPatch]
    assert options["patches"] == {"attn1_patch": ["other"]}  # the caller's dict and lists are untouched
    W.dreamo_forward_wrapper(FakeExecutor(), x, "t", "ctx", transformer_options=options, ref_latents=None)
    assert isinstance(seen["kwargs"]["transformer_options"]["patches"]["post_input"][0], W.DreamOEmbeddingPatch)
    negative = {**h.dreamo_call_options(m, [None]), "patches": {"attn1_patch": ["other"]}}
    W.dreamo_forward_wrapper(FakeExecutor(), x, "t", "ctx", transformer_options=negative)  # no layout: as given
    assert seen["kwargs"]["transformer_options"] is negative and "post_input" not in negative["patches"]


def test_wrapper_refuses_what_it_cannot_compose_with(loras_dir):
    """Another post_input patch (Flux KV Cache, USO style), RoPE options (ScaleROPE) and a renamed Flux parameter
    each give a clear error instead of a silently wrong forward or a guessed argument."""
    W = h.pack("nodes.runtime.wrapper")
    m, pos = h.run_node("DreamO_ApplyConditioning", model=dreamo(loras_dir), positive=h.conditioning(0))

    class FakeExecutor:
        class_obj = m.model.diffusion_model

        def __call__(self, *args, **kwargs):
            return "out"

    def uso_like_patch(inputs):
        return inputs

    x = torch.zeros(1, 16, 4, 4)
    foreign = h.dreamo_call_options(m, [pos], patches={"post_input": [uso_like_patch]})
    with pytest.raises(ValueError, match="another node added a post_input patch.*uso_like_patch.*Flux KV Cache"):
        W.dreamo_forward_wrapper(FakeExecutor(), x, "t", "ctx", transformer_options=foreign, ref_latents=None)
    rope = h.dreamo_call_options(m, [pos], rope_options={"scale_x": 2.0})
    with pytest.raises(ValueError, match="RoPE options.*Remove ScaleROPE"):
        W.dreamo_forward_wrapper(FakeExecutor(), x, "t", "ctx", transformer_options=rope, ref_latents=None)

    class RenamedFlux:  # a future Flux whose _forward renamed transformer_options
        def _forward(self, x, timestep, context, y=None, guidance=None, ref_latents=None, control=None, options=None):
            pass

    class RenamedExecutor(FakeExecutor):
        class_obj = RenamedFlux()

    with pytest.raises(RuntimeError, match="has no parameter 'transformer_options'"):
        W.dreamo_forward_wrapper(RenamedExecutor(), x, "t", "ctx", "y", "g", None, "control",
                                 h.dreamo_call_options(m, [pos]))


def test_core_flux_kv_cache_on_a_dreamo_model_is_refused(loras_dir):
    """Where this ComfyUI has core's FluxKVCache node (0.17+), stacking it with DreamO fails with its name."""
    import nodes

    kv = nodes.NODE_CLASS_MAPPINGS.get("FluxKVCache")
    m, pos = h.run_node("DreamO_ApplyConditioning", model=dreamo(loras_dir), positive=h.conditioning(0),
                        references=refs_of([(4, 4)], [1]))
    if kv is None:  # 0.3.64 has no such node: the same refusal through a plain post_input patch
        stacked = m.clone()
        stacked.set_model_post_input_patch(lambda inputs: inputs)
        name = "lambda"
    else:
        (stacked,) = kv.execute(model=m).result
        name = "nodes_flux"
    with pytest.raises(ValueError, match=f"another node added a post_input patch.*{name}"):
        run(stacked, pos)
