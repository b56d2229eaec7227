"""The catalogue of bad inputs and risky wirings: one row per bad input, corrupt file, NaN or miswiring the nodes
must refuse (a ValueError whose message starts with the node's display name and says what was expected) or warn
about (one logging warning per sampling run), and one row per wiring artists build that must simply work (node
order, guiders, crossed chains, regions, combined prompts): its output must equal an independent computation (the
hand-written forward, or core's BasicGuider / the same references through a single Apply), and what it would be
if DreamO ignored what the wiring asks for must differ from that. After every row, a known-good run (Load DreamO
LoRA + Encode Reference + Reference Options + Apply + one cfg-2 denoise step, on the SAME base model the rows use)
must give exactly the output it gave before any row ran: a row leaves nothing behind.

The README's "Reliability" section quotes the size of this table (ERRORS + WARNINGS + WIRINGS)."""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from bench import comfy_harness as h
from bench.comfy_harness import oracles as o

NAN, INF = math.nan, math.inf
NOISE = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
LOAD, ENCODE, OPTIONS, APPLY = ("Load DreamO LoRA", "DreamO Encode Reference", "DreamO Reference Options",
                                "Apply DreamO Conditioning")
RECORDER, PREVIEW, TEXT = "DreamO Routing Recorder", "DreamO Routing Preview", "DreamO Text Encode"


@dataclass
class Ctx:
    base: object  # the one base FLUX every model-using row and the good run share
    vae: object
    image: torch.Tensor
    baseline: torch.Tensor | None = None
    tmp: object = None  # an input folder for LoadImage


def tensor_file(folder, name, sd):
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / name))


def bad_files(folder) -> None:
    """The broken files of the catalogue, next to the harness's good ones."""
    import folder_paths

    tables = h.tiny_tables()
    nan_task = {**tables, "dreamo_task_embedding.weight": tables["dreamo_task_embedding.weight"].clone()}
    nan_task["dreamo_task_embedding.weight"][1, 3] = NAN
    inf_idx = {**tables, "dreamo_idx_embedding.weight": tables["dreamo_idx_embedding.weight"].clone()}
    inf_idx["dreamo_idx_embedding.weight"][4, 0] = INF
    tensor_file(folder, "embedding_nan.safetensors", nan_task)
    tensor_file(folder, "embedding_inf.safetensors", inf_idx)
    lora = h.comfy_lora()
    lora["diffusion_model.single_blocks.0.linear1.lora_up.weight"][0, 0] = NAN
    tensor_file(folder, "lora_nan.safetensors", lora)
    narrow = h.comfy_lora()  # img_attn.proj is (128, 128): a LoRA trained for another width gives (128, 64)
    narrow["diffusion_model.double_blocks.0.img_attn.proj.lora_down.weight"] = torch.zeros(4, 64)
    tensor_file(folder, "lora_other_width.safetensors", narrow)
    short = h.comfy_lora()  # single_blocks.0.linear1 is (7 * 128, 128): rows of qkv only (3 * 128) do not fit
    short["diffusion_model.single_blocks.0.linear1.lora_up.weight"] = torch.zeros(3 * h.HIDDEN, 4)
    tensor_file(folder, "lora_wrong_rows.safetensors", short)
    good = (folder / "embedding.safetensors").read_bytes()
    (folder / "embedding_truncated.safetensors").write_bytes(good[: len(good) - 100])
    (folder / "embedding_empty.safetensors").write_bytes(b"")
    (folder / "dreamo_lfs.safetensors").write_bytes(
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 1612345678\n")
    buf = io.BytesIO()
    torch.save(dict(tables), buf)
    (folder / "embedding_renamed_pickle.safetensors").write_bytes(buf.getvalue())
    (folder / "embedding.pt").write_bytes(buf.getvalue())  # a real pickle: loadable, but never by us
    tensor_file(folder, "embedding_float8.safetensors", {k: v.to(torch.float8_e4m3fn) for k, v in tables.items()})
    tensor_file(folder, "embedding_b.safetensors", h.tiny_tables(seed=TABLES_B))  # another DreamO version's tables
    folder_paths.filename_list_cache.clear()


def load(model, lora="None", strength=1.0, emb="None"):
    return h.run_node("DreamO_LoadLoRA", model=model, lora_name=lora, strength=strength, embedding_name=emb)[0]


def encode(vae, image, **kw):
    args = dict(task="ip", index=1, resolution=256, invert_mask=False)
    args.update(kw)
    return h.run_node("DreamO_EncodeReference", image=image, vae=vae, **args)[0]


def options(refs, index=1, **kw):
    return h.run_node("DreamO_ReferenceOptions", references=refs, index=index, **kw)[0]


def apply(model, positive, refs=None):
    return h.run_node("DreamO_ApplyConditioning", model=model, positive=positive, references=refs)


def fixed_refs():
    """One seeded 4x4 reference latent (2x2 tokens) at index 1."""
    return h.random_refs([(4, 4)], [1])


def dreamo(ctx):
    return load(ctx.base, "dreamo.safetensors", 1.0)


def applied(ctx, refs=None):
    return apply(dreamo(ctx), h.guided_positive(), refs if refs is not None else fixed_refs())


def sample(model, pos, neg=None, cfg=1.0, noise=NOISE):
    return h.denoise_once(model, pos, neg if neg is not None else h.conditioning(30), noise, h.SIGMA, cfg)


def good_run(ctx) -> torch.Tensor:
    refs = options(encode(ctx.vae, ctx.image), 1, strength=0.8)
    m, pos = apply(dreamo(ctx), h.guided_positive(), refs)
    return sample(m, pos, cfg=2.0).denoised


def sd_vae():
    """A 4-channel VAE (SD1.x/SDXL layout) from ComfyUI's own classes."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    dd = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 1, 1, 1],
              num_res_blocks=1, attn_resolutions=[], dropout=0.0)
    sd = h.random_state_dict(AutoencoderKL(embed_dim=4, ddconfig=dd), 0, scale=0.1)
    return comfy.sd.VAE(sd=sd, config={"params": {"embed_dim": 4, "ddconfig": dd}})


def load_image_mask(tmp_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's real LoadImage on an RGB PNG (no alpha): its MASK is a 64x64 block of zeros."""
    import folder_paths

    import nodes

    Image.fromarray(np.full((48, 64, 3), 100, dtype=np.uint8), "RGB").save(tmp_dir / "no_alpha.png")
    old = folder_paths.get_input_directory()
    folder_paths.set_input_directory(str(tmp_dir))
    try:
        image, mask = nodes.LoadImage().load_image("no_alpha.png")
    finally:
        folder_paths.set_input_directory(old)
    assert mask.shape == (1, 64, 64) and not mask.any()  # what makes this case easy to hit
    return image, mask


def encode_loaded_image(ctx, **kw):
    image, mask = load_image_mask(ctx.tmp)
    return encode(ctx.vae, image, mask=mask, **kw)


class NunchakuLikeFlux(torch.nn.Module):
    """Stands in for ComfyUI-nunchaku's wrapper: its own forward over an SVDQuant transformer, no ``_forward``."""

    def forward(self, x, timestep, context, y=None, guidance=None, control=None, transformer_options=None, **kw):
        return torch.zeros_like(x)


def nunchaku_model():
    m = h.tiny_flux()
    m.model.diffusion_model = NunchakuLikeFlux()  # what ComfyUI-nunchaku's loader does to a Flux model base
    return m


def negative_with(cond, refs):
    return [[c, {**v, "reference_latents": [r.latent for r in refs.refs]}] for c, v in cond]


def reference_latent_on_negative():
    """ComfyUI's own ReferenceLatent node puts a latent on the negative prompt."""
    import nodes

    node = nodes.NODE_CLASS_MAPPINGS["ReferenceLatent"]
    neg = h.conditioning(30)
    neg[0][1]["guidance"] = 4.0
    return node.execute(conditioning=neg, latent={"samples": fixed_refs().refs[0].latent}).result[0]


def foreign_patch(ctx):
    m, pos = applied(ctx)
    stacked = m.clone()
    stacked.set_model_post_input_patch(lambda inputs: inputs)
    sample(stacked, pos)


def rope_options(ctx):
    m, pos = applied(ctx)
    scaled = m.clone()
    scaled.model_options["transformer_options"]["rope_options"] = {"scale_x": 2.0}
    sample(scaled, pos)


def changed(pos, **values):
    return [[pos[0][0], {**pos[0][1], **values}]]


TABLES_B = 2  # h.tiny_tables seed of embedding_b.safetensors
WIDE_NOISE = torch.randn(1, 16, 8, 16, generator=torch.Generator().manual_seed(6))  # 64x128 px: left | right half


@dataclass
class Same:
    """A wiring's outcome: ``got`` must equal ``want`` (an independent computation) within the row's tolerance;
    ``ignored``, when given, is the output if DreamO ignored what this wiring asks for (the silent failure) and
    must differ from ``want``, so the comparison can fail."""

    got: torch.Tensor
    want: torch.Tensor
    ignored: torch.Tensor | None = None


def tables_only(ctx, emb="embedding.safetensors"):
    """Load DreamO LoRA with only the tables: the base's own weights, so the hand forward is the oracle."""
    return load(ctx.base, emb=emb)


def ksample(model, pos, steps=4):
    import nodes

    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    return nodes.common_ksampler(model, 7, steps, 1.0, "euler", "simple", pos, h.conditioning(30), latent)[0]["samples"]


def model_sampling_flux(model):
    return h.run_core_node("ModelSamplingFlux", model=model, max_shift=1.15, base_shift=0.5, width=1024,
                           height=1024)[0]


def node_order(ctx) -> Same:
    """ModelSamplingFlux after Apply instead of before Load, with a reference active for the first half."""
    half = options(fixed_refs(), 1, end_percent=0.5)
    m_after, pos = apply(tables_only(ctx), h.guided_positive(), half)
    shifted_first = load(model_sampling_flux(ctx.base), emb="embedding.safetensors")
    want = ksample(*apply(shifted_first, h.guided_positive(), half))
    return Same(ksample(model_sampling_flux(m_after), pos), want,
                ksample(*apply(shifted_first, h.guided_positive(), fixed_refs())))


def recorder_order(ctx) -> Same:
    """The Routing Recorder's step range with ModelSamplingFlux after it instead of before it."""
    m, pos = apply(tables_only(ctx), h.guided_positive(), fixed_refs())

    def maps(model, after: bool):
        rec_model, rec = h.run_node("DreamO_RoutingRecorder", model=model, blocks="all", start_percent=0.0,
                                    end_percent=0.5)
        ksample(model_sampling_flux(rec_model) if after else rec_model, pos)
        return rec.maps()

    return Same(maps(m, True), maps(model_sampling_flux(m), False))


def dual_cfg_1_1(ctx) -> Same:
    """Apply's positive as DualCFGGuider's cond1 (numbered 2), cfg 1 / 1: the positive alone."""
    m, pos = apply(tables_only(ctx), h.guided_positive(), fixed_refs())
    cap = o.dual_cfg_guider(m, pos, h.guided_positive(21), h.conditioning(30), 1.0, 1.0, NOISE)
    return Same(cap.denoised, o.hand_denoised(m, cap.x, pos, fixed_refs()),
                o.hand_denoised(m, cap.x, pos, fixed_refs(), with_embedding=False))


def dual_cfg_2_3(ctx) -> Same:
    """DualCFG with references, cfg 2 / 3: each of its three prompts gets exactly what it carries (core's
    BasicGuider on each, combined by DualCFG's formula written out)."""
    m, pos = apply(tables_only(ctx), h.guided_positive(), fixed_refs())
    middle, negative = h.guided_positive(21), h.conditioning(30)
    cap = o.dual_cfg_guider(m, pos, middle, negative, 2.0, 3.0, NOISE)
    p, mid, neg = (o.basic_guider(m, c, NOISE).denoised for c in (pos, middle, negative))
    plain_p = o.hand_denoised(m, cap.x, pos, fixed_refs(), with_embedding=False)  # cond1's layout ignored
    return Same(cap.denoised, o.dual_cfg_formula(p, mid, neg, 2.0, 3.0),
                o.dual_cfg_formula(plain_p, mid, neg, 2.0, 3.0))


def prompt_numbered_last(model, prompt, negative, cfg, noise):
    """One step of a custom guider with its own cond names ("scene", "subject") that lists the negative first, so
    ComfyUI numbers the DreamO prompt 1 (``cond_or_uncond``), the number core's CFG gives its negative."""
    import comfy.samplers

    class SceneSubjectGuider(comfy.samplers.CFGGuider):
        def set_conds(self, subject, scene):
            self.inner_set_conds({"scene": scene, "subject": subject})

        def predict_noise(self, x, timestep, model_options=None, seed=None):
            scene, subject = comfy.samplers.calc_cond_batch(
                self.inner_model, [self.conds["scene"], self.conds["subject"]], x, timestep, model_options or {})
            return scene + self.cfg * (subject - scene)

    guider = SceneSubjectGuider(model)
    guider.set_conds(prompt, negative)
    guider.set_cfg(cfg)
    return h.guider_denoise_once(guider, noise, h.SIGMA)


def custom_guider_numbers_prompt_1(ctx) -> Same:
    """A custom guider numbering Apply's positive 1 and a plain prompt 0, cfg 2: each gets exactly what it carries."""
    m, pos = apply(tables_only(ctx), h.guided_positive(), fixed_refs())
    scene = h.guided_positive(24)
    cap = prompt_numbered_last(m, pos, scene, 2.0, NOISE)
    plain = o.hand_denoised(m, cap.x, scene)
    return Same(cap.denoised, plain + 2.0 * (o.hand_denoised(m, cap.x, pos, fixed_refs()) - plain),
                plain + 2.0 * (o.hand_denoised(m, cap.x, pos, fixed_refs(), with_embedding=False) - plain))


def crossed_chains(ctx) -> Same:
    """The sampler gets Apply A's model (A: reference at strength 0) and Apply B's positive (strength 1)."""
    model_a, _ = apply(tables_only(ctx), h.guided_positive(), options(fixed_refs(), 1, strength=0.0))
    _, pos_b = apply(tables_only(ctx), h.guided_positive(), fixed_refs())
    cap = sample(model_a, pos_b)
    return Same(cap.denoised, o.hand_denoised(model_a, cap.x, pos_b, fixed_refs()),
                o.hand_denoised(model_a, cap.x, pos_b, h.dreamo_refs([])))  # = no reference (strength 0)


REGION_A, REGION_B = h.random_refs([(4, 4)], [1], seed=11), h.random_refs([(4, 4)], [2], seed=12)


def two_regions(ctx, region) -> tuple[object, object, list, list]:
    """Apply A (index 1) -> Apply B (index 2, model from A), positives through ``region(pos, side)`` (0 left,
    1 right), combined, sampled on a 64x128 latent: (model, capture, positive A, positive B)."""
    m_a, pos_a = apply(tables_only(ctx), h.guided_positive(), REGION_A)
    m_b, pos_b = apply(m_a, h.guided_positive(22), REGION_B)
    both = h.run_core_node("ConditioningCombine", conditioning_1=region(pos_a, 0), conditioning_2=region(pos_b, 1))[0]
    return m_b, sample(m_b, both, noise=WIDE_NOISE), pos_a, pos_b


def area(pos, side):
    return h.run_core_node("ConditioningSetArea", conditioning=pos, width=64, height=64, x=64 * side, y=0,
                           strength=1.0)[0]


def mask(pos, side):
    half = torch.zeros(8, 16)
    half[:, 8 * side : 8 * side + 8] = 1.0  # at latent size: no resampling of the mask edge
    return h.run_core_node("ConditioningSetMask", conditioning=pos, mask=half, set_cond_area="default",
                           strength=1.0)[0]


def regions_by_area(ctx) -> Same:
    """Each area is computed on its own crop with its own prompt's references (the areas do not overlap, so each
    half is exactly that crop's forward)."""
    m, cap, pos_a, pos_b = two_regions(ctx, area)
    left, right = cap.x[..., :8], cap.x[..., 8:]
    want = torch.cat([o.hand_denoised(m, left, pos_a, REGION_A), o.hand_denoised(m, right, pos_b, REGION_B)], -1)
    a_as_index_2 = h.dreamo_refs([REGION_A.refs[0].latent], [2])  # what region A got before: B's index
    ignored = torch.cat([o.hand_denoised(m, left, pos_a, a_as_index_2), want[..., 8:]], -1)
    return Same(cap.denoised, want, ignored)


def regions_by_mask(ctx) -> Same:
    """Each masked prompt sees the whole image with its own references; the masks pick each half."""
    m, cap, pos_a, pos_b = two_regions(ctx, mask)
    want = o.left_right(o.hand_denoised(m, cap.x, pos_a, REGION_A), o.hand_denoised(m, cap.x, pos_b, REGION_B))
    a_as_index_2 = h.dreamo_refs([REGION_A.refs[0].latent], [2])
    ignored = o.left_right(o.hand_denoised(m, cap.x, pos_a, a_as_index_2), want)
    return Same(cap.denoised, want, ignored)


def load_lora_after_apply(ctx) -> Same:
    """Load DreamO LoRA with another embedding file after Apply: the tables of the model that samples are used."""
    m, pos = apply(tables_only(ctx), h.guided_positive(), fixed_refs())
    cap = sample(load(m, emb="embedding_b.safetensors"), pos)
    return Same(cap.denoised, o.hand_denoised(m, cap.x, pos, fixed_refs(), tables_seed=TABLES_B),
                o.hand_denoised(m, cap.x, pos, fixed_refs()))


def load_model_with_apply_positive(ctx) -> Same:
    """Load DreamO LoRA's model straight to the sampler, Apply's positive: the conditioning carries DreamO."""
    m = tables_only(ctx)
    _, pos = apply(m, h.guided_positive(), fixed_refs())
    cap = sample(m, pos)
    return Same(cap.denoised, o.hand_denoised(m, cap.x, pos, fixed_refs()),
                o.hand_denoised(m, cap.x, pos, fixed_refs(), with_embedding=False))


def combined_with_plain_prompt(ctx) -> Same:
    """ConditioningCombine of Apply's positive and a plain prompt: ComfyUI averages the two, each as it is."""
    m, pos = apply(tables_only(ctx), h.guided_positive(), fixed_refs())
    other = h.guided_positive(23)
    cap = sample(m, h.run_core_node("ConditioningCombine", conditioning_1=pos, conditioning_2=other)[0])
    plain = o.hand_denoised(m, cap.x, other)
    return Same(cap.denoised, (o.hand_denoised(m, cap.x, pos, fixed_refs()) + plain) / 2,
                (o.hand_denoised(m, cap.x, pos, fixed_refs(), with_embedding=False) + plain) / 2)


def preview_overlay(ctx, image):
    m, pos = apply(tables_only(ctx), h.guided_positive(), fixed_refs())
    rec_model, rec = h.run_node("DreamO_RoutingRecorder", model=m, blocks="all")
    sample(rec_model, pos)
    return h.run_node("DreamO_RoutingPreview", routing=rec, image=image, opacity=0.5)[1]


RGB = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(4))


def preview_rgba(ctx) -> Same:
    """An RGBA image into Routing Preview: its alpha is dropped, as core's VAE Encode does."""
    return Same(preview_overlay(ctx, torch.cat([RGB, torch.rand(1, 16, 16, 1)], -1)), preview_overlay(ctx, RGB))


def merged_plain_first(ctx):
    return h.run_core_node("ModelMergeSimple", model1=ctx.base, model2=dreamo(ctx), ratio=0.5)[0]


def expect_same(atol: float):
    return ("same", "", atol)


def expect_error(node: str, pattern: str):
    return ("error", node, pattern)


def expect_warning(node: str, pattern: str):
    return ("warning", node, pattern)


@dataclass
class Row:
    id: str
    action: Callable[[Ctx], object]
    expected: tuple[str, str, object]  # (kind, node display name, regex the message must contain | tolerance)
    new: bool = True  # False: already refused before this catalogue (cheap to include)


ROWS = [
    # 1. NaN / inf in every float a user controls
    Row("lora-strength-nan", lambda c: load(c.base, "dreamo.safetensors", NAN),
        expect_error(LOAD, r"^Load DreamO LoRA: strength must be a finite number, got nan")),
    Row("lora-strength-inf", lambda c: load(c.base, "dreamo.safetensors", INF),
        expect_error(LOAD, r"strength must be a finite number, got inf")),
    Row("embedding-table-nan", lambda c: load(c.base, emb="embedding_nan.safetensors"),
        expect_error(LOAD, r"embedding_name 'embedding_nan\.safetensors': dreamo_task_embedding\.weight \(2, 128\) "
                           r"contains 1 NaN/infinite value")),
    Row("embedding-table-inf", lambda c: load(c.base, emb="embedding_inf.safetensors"),
        expect_error(LOAD, r"dreamo_idx_embedding\.weight \(10, 128\) contains 1 NaN/infinite")),
    Row("lora-tensor-nan", lambda c: load(c.base, "lora_nan.safetensors", 1.0, "embedding.safetensors"),
        expect_error(LOAD, r"lora_name 'lora_nan\.safetensors': diffusion_model\.single_blocks\.0\.linear1\.lora_up"
                           r"\.weight .* contains 1 NaN")),
    Row("options-strength-nan", lambda c: options(fixed_refs(), 1, strength=NAN),
        expect_error(OPTIONS, r"strength: reference strength must be a finite number >= 0, got nan"), new=False),
    Row("options-start-nan", lambda c: options(fixed_refs(), 1, start_percent=NAN),
        expect_error(OPTIONS, r"start_percent must be a finite number, got nan")),
    Row("options-end-inf", lambda c: options(fixed_refs(), 1, end_percent=INF),
        expect_error(OPTIONS, r"end_percent must be a finite number, got inf")),
    Row("options-box-nan", lambda c: options(fixed_refs(), 1, use_box=True, box_x=NAN),
        expect_error(OPTIONS, r"box_x must be a finite number, got nan")),
    Row("options-box-w-nan", lambda c: options(fixed_refs(), 1, use_box=True, box_w=NAN),
        expect_error(OPTIONS, r"box_w must be a finite number, got nan")),
    Row("recorder-percent-nan", lambda c: h.run_node("DreamO_RoutingRecorder", model=applied(c)[0], blocks="all",
                                                     start_percent=NAN),
        expect_error(RECORDER, r"start_percent must be a finite number, got nan")),
    Row("preview-opacity-nan", lambda c: h.run_node(
        "DreamO_RoutingPreview", routing=h.run_node("DreamO_RoutingRecorder", model=applied(c)[0])[1],
        image=torch.rand(1, 16, 16, 3), opacity=NAN),
        expect_error(PREVIEW, r"opacity must be a finite number, got nan")),
    Row("text-guidance-nan", lambda c: h.run_node("DreamO_TextEncode", clip=object(), model=dreamo(c), text="a dog",
                                                  guidance=NAN),
        expect_error(TEXT, r"guidance must be a finite number, got nan")),
    # 2. LoRA modules whose shapes do not fit the model (core only logs them at patch time)
    Row("lora-other-width", lambda c: load(c.base, "lora_other_width.safetensors", 1.0, "embedding.safetensors"),
        expect_error(LOAD, r"1 of 2 LoRA module\(s\) of lora_other_width\.safetensors do not fit this model, e\.g\. "
                           r"diffusion_model\.double_blocks\.0\.img_attn\.proj: the LoRA gives \(128, 64\), the "
                           r"model's weight is \(128, 128\)")),
    Row("lora-wrong-rows", lambda c: load(c.base, "lora_wrong_rows.safetensors", 1.0, "embedding.safetensors"),
        expect_error(LOAD, r"diffusion_model\.single_blocks\.0\.linear1: the LoRA gives \(384, 128\), the model's "
                           r"weight is \(896, 128\)")),
    # 3.-5. Encode Reference
    Row("encode-empty-batch", lambda c: encode(c.vae, torch.zeros(0, 64, 64, 3)),
        expect_error(ENCODE, r"image: the IMAGE batch is empty \(0 images\)")),
    Row("encode-loadimage-mask-no-alpha", lambda c: encode_loaded_image(c, invert_mask=False),
        expect_error(ENCODE, r"image 1: mask selects nothing .*whole reference would be white\. invert_mask is off.*"
                             r"turn invert_mask on")),
    Row("encode-all-ones-mask-inverted", lambda c: encode(c.vae, c.image, mask=torch.ones(1, 48, 64), invert_mask=True),
        expect_error(ENCODE, r"mask selects nothing .* invert_mask is on, so the mask was all ones before inversion")),
    Row("encode-transparent-rgba", lambda c: encode(c.vae, torch.cat([c.image, torch.zeros(1, 48, 64, 1)], -1)),
        expect_error(ENCODE, r"image 1: image alpha channel selects nothing")),
    Row("encode-sd-vae", lambda c: encode(sd_vae(), c.image),
        expect_error(ENCODE, r"vae: the VAE gives 4-channel latents \(an SD1\.x/SDXL VAE\), FLUX\.1 needs 16; use the "
                             r"FLUX VAE")),
    Row("encode-index-twice", lambda c: encode(c.vae, c.image, index=2, references=encode(c.vae, c.image, index=2)),
        expect_error(ENCODE, r"reference index 2 is used twice"), new=False),
    Row("encode-index-out-of-range", lambda c: encode(c.vae, torch.cat([c.image, c.image]), index=9),
        expect_error(ENCODE, r"out of range"), new=False),
    Row("encode-mask-batch", lambda c: encode(c.vae, torch.cat([c.image] * 3), mask=torch.ones(2, 48, 64)),
        expect_error(ENCODE, r"mask batch \(2, 48, 64\) does not match the image batch of 3"), new=False),
    Row("encode-bad-task", lambda c: encode(c.vae, c.image, task="pose"),
        expect_error(ENCODE, r"task must be one of ip, id, style"), new=False),
    Row("encode-nan-image", lambda c: encode(c.vae, torch.full((1, 48, 64, 3), NAN)),
        expect_error(ENCODE, r"image 1: image: contains NaN or infinite values"), new=False),
    # 6. files: safetensors only, and what a broken one really is
    Row("file-git-lfs-pointer", lambda c: load(c.base, "dreamo_lfs.safetensors"),
        expect_error(LOAD, r"lora_name 'dreamo_lfs\.safetensors': not a readable safetensors file: this is a git-lfs "
                           r"pointer .*download the real file")),
    Row("file-0-bytes", lambda c: load(c.base, emb="embedding_empty.safetensors"),
        expect_error(LOAD, r"embedding_name 'embedding_empty\.safetensors': not a readable safetensors file: the file "
                           r"is 0 bytes")),
    Row("file-truncated", lambda c: load(c.base, emb="embedding_truncated.safetensors"),
        expect_error(LOAD, r"not a readable safetensors file: truncated: header says (\d+) bytes, file has (\d+)")),
    Row("file-renamed-pickle", lambda c: load(c.base, emb="embedding_renamed_pickle.safetensors"),
        expect_error(LOAD, r"this is a pickle/zip checkpoint \(torch\.save format\) renamed to \.safetensors")),
    Row("file-pickle-pt-embedding", lambda c: load(c.base, emb="embedding.pt"),
        expect_error(LOAD, r"embedding_name 'embedding\.pt': only \.safetensors files are accepted \(no pickle")),
    Row("file-not-dreamo", lambda c: load(c.base, "not_dreamo.safetensors"),
        expect_error(LOAD, r"not a DreamO file"), new=False),
    Row("file-tables-wrong-width", lambda c: load(c.base, emb="tables_wrong_width.safetensors"),
        expect_error(LOAD, r"expected \(2, 128\)"), new=False),
    Row("file-lora-in-embedding-slot", lambda c: load(c.base, emb="dreamo_comfyui.safetensors"),
        expect_error(LOAD, r"holds a LoRA"), new=False),
    Row("no-embeddings", lambda c: load(c.base, "dreamo_comfyui.safetensors"),
        expect_error(LOAD, r"no DreamO embeddings"), new=False),
    # 7. wiring: references on the negative, DreamO model without Apply, Apply's conditioning without its model
    Row("negative-gets-dreamo-references", lambda c: sample(*applied(c), neg=applied(c)[1], cfg=2.0),
        expect_error(APPLY, r"the sampler's NEGATIVE conditioning carries 1 DreamO reference\(s\) .* cfg is 2\.0")),
    Row("negative-gets-reference-latent", lambda c: sample(*applied(c), neg=reference_latent_on_negative(), cfg=2.0),
        expect_error(APPLY, r"a prompt reaching the sampler carries 1 reference latent\(s\) but no DreamO layout .*"
                            r"NEGATIVE prompt")),
    Row("load-model-with-apply-positive", load_model_with_apply_positive, expect_same(1e-5)),
    Row("dreamo-model-without-apply", lambda c: sample(dreamo(c), h.guided_positive()),
        expect_warning(LOAD, r"this model carries DreamO's LoRA/embedding tables but is sampled without Apply DreamO "
                             r"Conditioning.*Put Apply DreamO Conditioning on the sampler's positive prompt")),
    Row("apply-without-embeddings", lambda c: apply(c.base, h.guided_positive()),
        expect_error(APPLY, r"model has no DreamO embeddings"), new=False),
    Row("runtime-missing-references", lambda c: sample(applied(c)[0], changed(applied(c)[1], reference_latents=None)),
        expect_error(APPLY, r"has 0 reference latent\(s\), but its DreamO layout has 1 reference\(s\)"), new=False),
    Row("runtime-token-grid-changed", lambda c: sample(applied(c)[0], changed(
        applied(c)[1], reference_latents=[torch.zeros(1, 16, 6, 4)])),
        expect_error(APPLY, r"has 3x2 tokens at run time, expected 2x2"), new=False),
    Row("runtime-method-not-uxo", lambda c: sample(applied(c)[0], changed(applied(c)[1], reference_latents_method="offset")),
        expect_error(APPLY, r"DreamO needs 'uxo'"), new=False),
    Row("runtime-foreign-post-input", foreign_patch, expect_error(APPLY, r"another node added a post_input patch"),
        new=False),
    Row("runtime-rope-options", rope_options, expect_error(APPLY, r"Remove ScaleROPE"), new=False),
    # 8. models DreamO cannot hook into
    Row("nunchaku-load-lora", lambda c: load(nunchaku_model(), emb="embedding.safetensors"),
        expect_error(LOAD, r"NunchakuLikeFlux is not ComfyUI's Flux \(it has no _forward, e\.g\. a Nunchaku SVDQuant "
                           r"int4 FLUX.*use a GGUF FLUX\.1-dev .*fp8 .*int8/int4")),
    Row("nunchaku-apply", lambda c: apply(nunchaku_model(), h.guided_positive()),
        expect_error(APPLY, r"NunchakuLikeFlux is not ComfyUI's Flux \(it has no _forward")),
    Row("schnell-model", lambda c: load(h.tiny_family_model("flux1-schnell"), emb="embedding.safetensors"),
        expect_error(LOAD, r"no guidance embedding"), new=False),
    Row("options-negative-strength", lambda c: options(fixed_refs(), 1, strength=-0.5),
        expect_error(OPTIONS, r"strength"), new=False),
    Row("options-start-after-end", lambda c: options(fixed_refs(), 1, start_percent=0.7, end_percent=0.3),
        expect_error(OPTIONS, r"need 0 <= start <= end <= 1"), new=False),
    Row("options-missing-index", lambda c: options(fixed_refs(), 4),
        expect_error(OPTIONS, r"no reference with index 4"), new=False),
    Row("options-box-outside", lambda c: options(fixed_refs(), 1, use_box=True, box_x=0.6, box_w=0.6),
        expect_error(OPTIONS, r"must lie inside the image"), new=False),
    Row("recorder-bad-blocks", lambda c: h.run_node("DreamO_RoutingRecorder", model=applied(c)[0], blocks="first"),
        expect_error(RECORDER, r"blocks must be 'all' or comma-separated"), new=False),
    # 9. the conditioning carries its own DreamO: wirings that must work whatever the node order or guider
    Row("order-modelsamplingflux-after-apply", node_order, expect_same(0.0)),
    Row("order-modelsamplingflux-after-recorder", recorder_order, expect_same(0.0)),
    Row("guider-dualcfg-cond1-cfg-1-1", dual_cfg_1_1, expect_same(1e-5)),
    Row("guider-dualcfg-references-cfg-2-3", dual_cfg_2_3, expect_same(1e-4)),
    Row("guider-custom-numbers-positive-1", custom_guider_numbers_prompt_1, expect_same(1e-4)),
    Row("crossed-chains-model-a-positive-b", crossed_chains, expect_same(1e-5)),
    Row("regional-two-applies-set-area", regions_by_area, expect_same(1e-5)),
    Row("regional-two-applies-set-mask", regions_by_mask, expect_same(1e-5)),
    Row("load-lora-after-apply", load_lora_after_apply, expect_same(1e-5)),
    Row("combine-after-apply", combined_with_plain_prompt, expect_same(1e-5)),
    Row("preview-rgba-image", preview_rgba, expect_same(0.0)),
    # 10. a DreamO conditioning sampled by a model without DreamO (the guard it carries)
    Row("gap-plain-model-samples-dreamo-conditioning", lambda c: sample(c.base, applied(c)[1]),
        expect_error(APPLY, r"positive: a conditioning carrying DreamO references reaches a sampler whose model did "
                            r"not go through Load DreamO LoRA \(e\.g\. a refiner stage after SplitSigmas")),
    Row("gap-model-merge-plain-first", lambda c: sample(merged_plain_first(c), applied(c)[1]),
        expect_error(APPLY, r"did not go through Load DreamO LoRA .*put the DreamO model first in ModelMergeSimple")),
    # 11. raw or misleading messages, now named
    Row("embedding-table-float8", lambda c: load(c.base, emb="embedding_float8.safetensors"),
        expect_error(LOAD, r"embedding_name 'embedding_float8\.safetensors': dreamo_task_embedding is stored as "
                           r"float8_e4m3fn; DreamO's tables must be 16-, 32- or 64-bit floats.*convert")),
    Row("preview-two-channel-image", lambda c: preview_overlay(c, torch.rand(1, 16, 16, 2)),
        expect_error(PREVIEW, r"image has 2 channels; connect an RGB \(3\), RGBA \(4\) or grey \(1\) IMAGE")),
    Row("text-placeholder-leading-zero", lambda c: h.run_node("DreamO_TextEncode", clip=object(), model=dreamo(c),
                                                              text="a dog [ref#01]", guidance=3.5,
                                                              references=fixed_refs()),
        expect_error(TEXT, r"prompt: write \[ref#1\], not \[ref#01\]: a placeholder's index has no leading zeros")),
    Row("recorder-blocks-only-commas", lambda c: h.run_node("DreamO_RoutingRecorder", model=applied(c)[0],
                                                            blocks=" , ,"),
        expect_error(RECORDER, r"blocks ', ,' names no block, so nothing would be recorded")),
    Row("encode-4d-mask", lambda c: encode(c.vae, c.image, mask=torch.ones(1, 1, 48, 64)),
        expect_error(ENCODE, r"mask must be a MASK of shape \(B, H, W\) or \(H, W\), got a 4-d tensor "
                             r"\(1, 1, 48, 64\).*ImageToMask")),
    Row("encode-resolution-named", lambda c: encode(c.vae, torch.rand(1, 16, 2048, 3), resolution=64),
        expect_error(ENCODE, r"aspect ratio too extreme for resolution=64: it would become 720x0; crop it or raise "
                             r"resolution")),
]
ERRORS = sum(r.expected[0] == "error" for r in ROWS)
WARNINGS = sum(r.expected[0] == "warning" for r in ROWS)
WIRINGS = sum(r.expected[0] == "same" for r in ROWS)


@pytest.fixture(scope="module")
def ctx(loras_dir, tmp_path_factory):
    bad_files(loras_dir)
    c = Ctx(base=h.tiny_flux(), vae=h.tiny_vae(),
            image=torch.rand(1, 48, 64, 3, generator=torch.Generator().manual_seed(0)))
    c.tmp = tmp_path_factory.mktemp("input")
    c.baseline = good_run(c)
    return c


def test_catalogue_ids_are_unique_and_counted():
    assert len({r.id for r in ROWS}) == len(ROWS) == ERRORS + WARNINGS + WIRINGS
    assert WARNINGS >= 1 and ERRORS > WARNINGS and WIRINGS >= 1


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_refused_clearly_and_leaves_nothing_behind(ctx, row, caplog):
    kind, node, pattern = row.expected
    if kind == "error":
        with pytest.raises(Exception) as e:
            row.action(ctx)
        assert type(e.value) is ValueError, f"{type(e.value).__name__}: {e.value}"
        message = str(e.value)
        assert message.startswith(f"{node}: "), message
        assert re.search(pattern, message), message
    elif kind == "warning":
        with caplog.at_level(logging.WARNING, logger="DreamO"):
            row.action(ctx)
        found = [r for r in caplog.records if r.levelno == logging.WARNING and re.search(pattern, r.getMessage())]
        assert len(found) == 1, [r.getMessage() for r in caplog.records]
        assert found[0].getMessage().startswith(f"{node}: ")
    else:
        outcome = row.action(ctx)
        error = (outcome.got - outcome.want).abs().max().item()
        assert error <= pattern, f"{row.id}: max |got - want| {error:.3g} > {pattern}"
        if outcome.ignored is not None:  # the comparison can fail: ignoring the wiring gives another output
            assert (outcome.ignored - outcome.want).abs().max().item() > 1e-3
    assert torch.equal(good_run(ctx), ctx.baseline)  # the next good run is unaffected


def test_truncated_file_sizes_are_the_real_ones(ctx, loras_dir):
    """The numbers in the truncated-file message are the file's: the header's total and the bytes on disk."""
    path = loras_dir / "embedding_truncated.safetensors"
    with pytest.raises(ValueError) as e:
        load(ctx.base, emb=path.name)
    need, have = map(int, re.search(r"header says (\d+) bytes, file has (\d+)", str(e.value)).groups())
    assert have == path.stat().st_size and need == (loras_dir / "embedding.safetensors").stat().st_size


def test_pickle_embedding_was_loadable_by_comfy_but_is_refused(ctx, loras_dir):
    """The .pt file is a valid pickle that ComfyUI's own loader reads (weights_only): refusing it is our choice
    ("safetensors only"), not a side effect of a broken file."""
    import comfy.utils

    sd = comfy.utils.load_torch_file(str(loras_dir / "embedding.pt"), safe_load=True)
    assert torch.equal(sd["dreamo_task_embedding.weight"], h.tiny_tables()["dreamo_task_embedding.weight"])


def test_readme_quotes_this_catalogue():
    """README "Reliability" states the size and the counts of ROWS; they must not drift apart."""
    text = (h.REPO / "README.md").read_text(encoding="utf-8")
    words = (r"\*\*(\d+) rows: (\d+) clear errors, (\d+) warnings? and (\d+) wirings that must work\*\* "
             r"\((\d+) of them new with this catalogue, (\d+) refused before\)")
    found = re.search(words.replace(" ", r"\s+"), text)
    assert found, "README has no Reliability counts"
    new = sum(r.new for r in ROWS)
    assert tuple(map(int, found.groups())) == (len(ROWS), ERRORS, WARNINGS, WIRINGS, new, len(ROWS) - new)
