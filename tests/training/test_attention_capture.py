"""The routing records are read off the attention's own queries/keys: they must equal an independent
re-projection of the same tokens (the layer's to_q/to_k, norms and RoPE applied by hand to the layer inputs)."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.embeddings import apply_rotary_emb
from test_model import CAPTIONS, make_inputs

from dreamo_core.routing.losses import placeholder_logits, reference_response
from training.attention_capture import select_layers
from training.config import ModelConfig
from training.model import build_model


def rope_at(x, rope, pos):
    cos, sin = rope
    return apply_rotary_emb(x, (cos[pos], sin[pos]), sequence_dim=1)


def reprojected_records(attn, inputs, cap, mode):
    """Route (n_refs, B, N) and holder (n_refs, B, n_refs) of one layer from its inputs, projected again by hand."""
    hidden, text, rope = inputs
    t, n = cap.text_len, cap.n_target
    heads = lambda x: x.unflatten(-1, (-1, attn.head_dim))  # noqa: E731
    single = text is None
    img = hidden[:, t:] if single else hidden
    k_img = rope_at(attn.norm_k(heads(attn.to_k(img[:, :n]))), rope, torch.arange(t, t + n))
    txt = hidden[:, :t] if single else text
    ph = torch.stack([txt[b, cap.placeholder_pos[b]] for b in range(txt.shape[0])])  # (B, n_refs, D)
    proj, norm = (attn.to_k, attn.norm_k) if single else (attn.add_k_proj, attn.norm_added_k)
    k_ph = rope_at(norm(heads(proj(ph))), rope, torch.zeros(ph.shape[1], dtype=torch.long))
    route, holder = [], []
    for s, e in cap.ref_spans:
        q = rope_at(attn.norm_q(heads(attn.to_q(img[:, s:e]))), rope, torch.arange(t + s, t + e))
        route.append(reference_response(q, k_img, mode))
        holder.append(placeholder_logits(q, k_ph))
    return torch.stack(route), torch.stack(holder)


@pytest.mark.parametrize("mode", ["softmax", "logits"])
@pytest.mark.parametrize("keep", [None, torch.tensor([0, 2, 3, 5, 6])])
def test_records_equal_a_reprojection_of_the_layer_inputs(mode, keep) -> None:
    model = build_model(ModelConfig(lora_rank=4, num_layers=2, num_single_layers=1))
    with torch.no_grad():  # non-zero LoRA B so the LoRA is part of what both sides must project the same
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))) * 0.1)
    lat, refs, sigma, g = make_inputs()
    inputs, hooks = {}, []
    for name, mod in model.transformer.named_modules():
        if name.endswith(".attn"):
            block = name[: -len(".attn")]
            hooks.append(mod.register_forward_pre_hook(
                lambda m, a, kw, block=block: inputs.__setitem__(block, (
                    kw["hidden_states"], kw.get("encoder_hidden_states"), kw["image_rotary_emb"])), with_kwargs=True))
    layers = select_layers(model.transformer, ["transformer_blocks.1", "single_transformer_blocks.0"])
    with torch.no_grad():
        _, cap = model(lat, (4, 4), refs, sigma, g, CAPTIONS, ref_keep=keep, capture_layers=layers, route_mode=mode,
                       with_placeholders=True)
    for h in hooks:
        h.remove()
    assert sorted(cap.route) == sorted(layers) == sorted(cap.holder)
    for name in layers:
        attn = model.transformer.get_submodule(name).attn
        with torch.no_grad():
            route, holder = reprojected_records(attn, inputs[name], cap, mode)
        assert cap.route[name].shape == route.shape == (2, 2, 16)
        assert torch.allclose(cap.route[name], route, atol=1e-5, rtol=1e-5), name
        assert torch.allclose(cap.holder[name], holder, atol=1e-5, rtol=1e-5), name
