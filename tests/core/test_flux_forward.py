"""dreamo_transformer_forward vs an independent re-implementation of the official DreamO forward
(``flux_transformer_forward``: embeddings added right after x_embedder, diagonal ids, output sliced to the target)."""

import pytest
import torch

from dreamo_core.conditioning.embeddings import ConditionEmbeddings
from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward

TARGET = (2, 3)
TEXT_LEN = 5


def hand_ids(target, refs):
    """Ids written with explicit loops: target (0, r, c); each ref from the running (rows, cols) offset."""
    rows = [(0.0, r, c) for r in range(target[0]) for c in range(target[1])]
    start_r, start_c = target
    for h, w in refs:
        rows += [(0.0, start_r + r, start_c + c) for r in range(h) for c in range(w)]
        start_r, start_c = start_r + h, start_c + w
    return torch.tensor(rows, dtype=torch.float32)


@torch.no_grad()
def reference_forward(model, latents, refs, sigma, guidance, pooled, prompt, task, idx):
    """The official DreamO forward on diffusers 0.42's FluxTransformer2DModel, step by step."""
    x = torch.cat([latents, *[t for t, _, _ in refs]], dim=1)
    hidden = model.x_embedder(x)
    emb = [task[1]] * latents.shape[1]
    for tokens, _, k in refs:
        emb += [task[0] + idx[k]] * tokens.shape[1]
    hidden = hidden + torch.stack(emb)[None]
    temb = model.time_text_embed(sigma.to(hidden.dtype) * 1000, guidance.to(hidden.dtype) * 1000, pooled)
    txt = model.context_embedder(prompt)
    ids = torch.cat([torch.zeros(prompt.shape[1], 3), hand_ids(TARGET, [g for _, g, _ in refs])])
    rope = model.pos_embed(ids)
    for block in [*model.transformer_blocks, *model.single_transformer_blocks]:
        txt, hidden = block(hidden_states=hidden, encoder_hidden_states=txt, temb=temb, image_rotary_emb=rope)
    out = model.proj_out(model.norm_out(hidden, temb))
    return out[:, : latents.shape[1]]


def inputs(batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        latents=torch.randn(batch, TARGET[0] * TARGET[1], 64, generator=g),
        sigma=torch.full((batch,), 0.6),
        guidance=torch.full((batch,), 3.5),
        pooled=torch.randn(batch, 32, generator=g),
        prompt_embeds=torch.randn(batch, TEXT_LEN, 32, generator=g),
    )


def tables(width: int = 32) -> ConditionEmbeddings:
    g = torch.Generator().manual_seed(11)
    return ConditionEmbeddings(torch.randn(2, width, generator=g), torch.randn(10, width, generator=g))


def make_refs(spec, batch: int = 1):
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(batch, h * w, 64, generator=g), (h, w), k) for (h, w), k in spec]


def call(model, inp, refs, tab, **kw):
    return dreamo_transformer_forward(
        model, inp["latents"], TARGET, [ReferenceTokens(t, g, k) for t, g, k in refs], inp["sigma"], inp["guidance"],
        inp["pooled"], inp["prompt_embeds"], tab, **kw,
    )


CASES = {
    "0 refs": [],
    "1 ref": [((2, 2), 1)],
    "2 refs": [((2, 2), 1), ((1, 3), 2)],
    "3 refs": [((2, 2), 1), ((1, 3), 2), ((3, 1), 3)],
    "slot 2 only": [((2, 2), 2)],
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("batch", [1, 2])
def test_matches_independent_official_forward(tiny_flux, case, batch):
    inp, tab = inputs(batch), tables()
    refs = make_refs(CASES[case], batch)
    with torch.no_grad():
        got = call(tiny_flux, inp, refs, tab)
    expected = reference_forward(tiny_flux, inp["latents"], refs, inp["sigma"], inp["guidance"], inp["pooled"],
                                 inp["prompt_embeds"], tab.task, tab.idx)
    assert got.shape == (batch, 6, 64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert len(tiny_flux.x_embedder._forward_hooks) == 0


@torch.no_grad()
def test_references_and_their_index_matter(tiny_flux):
    inp, tab = inputs(), tables()
    one = call(tiny_flux, inp, make_refs([((2, 2), 1)]), tab)
    other_index = call(tiny_flux, inp, make_refs([((2, 2), 2)]), tab)
    none = call(tiny_flux, inp, [], tab)
    assert (one - other_index).abs().max() > 1e-4
    assert (one - none).abs().max() > 1e-4


@torch.no_grad()
def test_no_refs_still_adds_task1_to_the_target(tiny_flux):
    inp, tab = inputs(), tables()
    dreamo = call(tiny_flux, inp, [], tab)
    plain = call(tiny_flux, inp, [], None)
    assert (dreamo - plain).abs().max() > 1e-3
    # tables=None is exactly the stock diffusers forward
    stock = tiny_flux(hidden_states=inp["latents"], timestep=inp["sigma"], guidance=inp["guidance"],
                      pooled_projections=inp["pooled"], encoder_hidden_states=inp["prompt_embeds"],
                      txt_ids=torch.zeros(TEXT_LEN, 3), img_ids=hand_ids(TARGET, []), return_dict=False)[0]
    assert torch.equal(plain, stock)
    # and zero tables bring the DreamO forward back to it
    zero = ConditionEmbeddings(torch.zeros(2, 32), torch.zeros(10, 32))
    torch.testing.assert_close(call(tiny_flux, inp, [], zero), stock, rtol=0, atol=1e-6)


@torch.no_grad()
def test_hook_removed_when_the_forward_raises_and_other_hooks_kept(tiny_flux):
    calls = []
    user = tiny_flux.x_embedder.register_forward_hook(lambda *a: calls.append(1))
    inp = inputs()
    inp["prompt_embeds"] = torch.randn(1, TEXT_LEN, 31)  # context_embedder fails after x_embedder ran
    with pytest.raises(RuntimeError):
        call(tiny_flux, inp, make_refs([((2, 2), 1)]), tables())
    assert calls == [1]
    assert list(tiny_flux.x_embedder._forward_hooks) == [user.id]
    user.remove()
    assert len(tiny_flux.x_embedder._forward_hooks) == 0


@torch.no_grad()
def test_bf16_ids_dtype_runs_and_stays_close(tiny_flux):
    inp, tab, refs = inputs(), tables(), make_refs(CASES["2 refs"])
    f32 = call(tiny_flux, inp, refs, tab)
    bf16_ids = call(tiny_flux, inp, refs, tab, ids_dtype=torch.bfloat16)
    torch.testing.assert_close(bf16_ids, f32, rtol=0, atol=1e-5)  # all ids <= 256 are exact in bf16


def test_refs_without_tables(tiny_flux):
    with pytest.raises(ValueError, match=r"references need DreamO embedding tables \(load dreamo\.safetensors or embedding\.safetensors\)"):
        call(tiny_flux, inputs(), make_refs([((2, 2), 1)]), None)


def test_latents_not_matching_the_grid(tiny_flux):
    inp = inputs()
    inp["latents"] = torch.randn(1, 5, 64)
    with pytest.raises(ValueError, match=r"latents must be \(B, 6, C\) for grid \(2, 3\), got \(1, 5, 64\)"):
        call(tiny_flux, inp, [], tables())


@pytest.mark.parametrize("tokens_shape, message", [
    ((1, 5, 64), r"reference 1: tokens \(1, 5, 64\) do not match batch 1 and grid \(2, 2\)"),
    ((2, 4, 64), r"reference 1: tokens \(2, 4, 64\) do not match batch 1 and grid \(2, 2\)"),
])
def test_reference_tokens_not_matching(tiny_flux, tokens_shape, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_flux, inputs(), [(torch.randn(tokens_shape), (2, 2), 1)], tables())
    assert len(tiny_flux.x_embedder._forward_hooks) == 0


def test_bad_reference_index(tiny_flux):
    with pytest.raises(ValueError, match=r"reference index 10 is out of range; DreamO supports indices 1-9"):
        call(tiny_flux, inputs(), make_refs([((2, 2), 10)]), tables())
    with pytest.raises(ValueError, match=r"reference index 1 is used twice"):
        call(tiny_flux, inputs(), make_refs([((2, 2), 1), ((1, 3), 1)]), tables())


def test_tables_of_another_width(tiny_flux):
    with pytest.raises(ValueError, match=r"condition embedding width 16 does not match the model width 32"):
        call(tiny_flux, inputs(), make_refs([((2, 2), 1)]), tables(width=16))
    assert len(tiny_flux.x_embedder._forward_hooks) == 0
