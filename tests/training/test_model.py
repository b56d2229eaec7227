"""The trainable model: DreamO forward parity, LoRA targets, gradients from each loss, checkpointing, drop."""

from __future__ import annotations

import pytest
import torch

from dreamo_core.conditioning.placement import Box, placed_reference_ids
from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward
from dreamo_core.routing.losses import flow_matching_loss, placeholder_loss, routing_loss
from training.attention_capture import select_layers
from training.config import ModelConfig
from training.model import build_model

CAPTIONS = ["a [ref#1] and a [ref#2] on gray", "a [ref#2] left of a [ref#1]"]


def make_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(2, 16, 64, generator=g)
    refs = [ReferenceTokens(torch.randn(2, 4, 64, generator=g), (2, 2), 1),
            ReferenceTokens(torch.randn(2, 4, 64, generator=g), (2, 2), 2)]
    return lat, refs, torch.tensor([0.3, 0.8]), torch.full((2,), 3.5)


def perturbed_model(**kw):
    model = build_model(ModelConfig(lora_rank=4, num_layers=1, num_single_layers=1, **kw))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # LoRA B starts at zero; give it values so A receives gradients too
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def test_lora_targets_are_the_official_ones() -> None:
    model = perturbed_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"task_embedding", "idx_embedding", "t5_embedding"} <= trainable
    lora = {n.split(".lora_")[0].removeprefix("transformer.") for n in trainable if ".lora_" in n}
    official = {f"transformer_blocks.0.attn.{m}" for m in ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj",
                                                           "add_k_proj", "add_v_proj", "to_add_out")}
    official |= {f"single_transformer_blocks.0.{m}" for m in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_out")}
    assert lora == official  # the official DreamO targets, written out (spec §4)
    assert "proj_out" not in lora and "single_transformer_blocks.0.proj_out" in lora
    assert len(lora) == 8 + 4  # 1 double block x 8 targets, 1 single block x 4
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".lora_" not in n and "embedding" not in n)


def test_forward_equals_core_dreamo_forward() -> None:
    model = perturbed_model()
    lat, refs, sigma, g = make_inputs()
    ours, cap = model(lat, (4, 4), refs, sigma, g, CAPTIONS, capture_layers=select_layers(model.transformer, ["*"]))
    pe, pooled, _ = model.encode_text(CAPTIONS)
    core = dreamo_transformer_forward(model.transformer, lat, (4, 4), refs, sigma, g, pooled, pe, model.tables)
    assert torch.equal(ours, core)  # the capture processors do not change the attention output
    assert cap.stacked_route().shape == (2, 2, 2, 16)
    # softmax densities: each reference's response sums to N over the target tokens
    assert torch.allclose(cap.stacked_route().sum(-1), torch.full((2, 2, 2), 16.0), atol=1e-4)


def grid_ids(rows: int, cols: int, r0: int = 0, c0: int = 0) -> torch.Tensor:
    """(rows*cols, 3) ids (0, r0 + r, c0 + c), written out."""
    return torch.tensor([[0.0, r0 + r, c0 + c] for r in range(rows) for c in range(cols)])


def ids_of_forward(model, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainer forward's velocity and the ``img_ids`` its transformer call received."""
    seen = []
    hook = model.transformer.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["img_ids"].clone()),
                                                       with_kwargs=True)
    try:
        out, _ = model(*args, **kwargs)
    finally:
        hook.remove()
    return out, seen[0]


def test_a_reference_with_a_box_gets_placed_ids_in_the_trainer_forward() -> None:
    model = perturbed_model()
    lat, refs, sigma, g = make_inputs()
    box = Box(0.5, 0.0, 0.5, 1.0)  # the right half of the 4 x 4 target
    boxed = [refs[0], ReferenceTokens(refs[1].tokens, refs[1].grid, refs[1].index, box)]
    out, ids = ids_of_forward(model, lat, (4, 4), boxed, sigma, g, CAPTIONS)
    placed = placed_reference_ids((2, 2), box, (4, 4))
    assert ids.dtype == torch.float32
    assert torch.equal(ids, torch.cat([grid_ids(4, 4), grid_ids(2, 2, 4, 4), placed]))  # target, diagonal, box
    assert not torch.equal(placed, grid_ids(2, 2, 6, 6))  # the box moved reference 2 off its diagonal place
    _, diagonal = ids_of_forward(model, lat, (4, 4), refs, sigma, g, CAPTIONS)
    assert torch.equal(diagonal, torch.cat([grid_ids(4, 4), grid_ids(2, 2, 4, 4), grid_ids(2, 2, 6, 6)]))
    pe, pooled, _ = model.encode_text(CAPTIONS)
    core = dreamo_transformer_forward(model.transformer, lat, (4, 4), boxed, sigma, g, pooled, pe, model.tables,
                                      ids_dtype=torch.float32)
    assert torch.equal(out, core)  # the generator's forward with the same box
    keep = torch.tensor([1, 6])
    _, kept = ids_of_forward(model, lat, (4, 4), boxed, sigma, g, CAPTIONS, ref_keep=keep)
    assert torch.equal(kept, ids[torch.cat([torch.arange(16), 16 + keep])])  # dropped tokens keep their placed ids


def test_placeholder_rows_substituted() -> None:
    model = perturbed_model()
    pe, _, slots = model.encode_text(CAPTIONS)
    assert torch.equal(pe[0, 1], model.t5_embedding[0]) and torch.equal(pe[1, 1], model.t5_embedding[1])
    assert slots[0].tolist()[:5] == [-1, 0, -1, -1, 1]


def test_keep_all_reference_tokens_equals_no_drop() -> None:
    model = perturbed_model()
    lat, refs, sigma, g = make_inputs()
    full, _ = model(lat, (4, 4), refs, sigma, g, CAPTIONS)
    kept, _ = model(lat, (4, 4), refs, sigma, g, CAPTIONS, ref_keep=torch.arange(8))
    dropped, cap = model(lat, (4, 4), refs, sigma, g, CAPTIONS, ref_keep=torch.tensor([1, 6]),
                         capture_layers=frozenset({"transformer_blocks.0"}))
    assert torch.allclose(full, kept, atol=1e-6)
    assert not torch.allclose(full, dropped, atol=1e-4)
    assert cap.ref_spans == [(16, 17), (17, 18)]


def grads_from(loss_name: str, checkpointing: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = perturbed_model(gradient_checkpointing=checkpointing)
    model.train()
    lat, refs, sigma, g = make_inputs()
    noise = torch.randn_like(lat)
    z_t = (1 - sigma[:, None, None]) * lat + sigma[:, None, None] * noise
    pred, cap = model(z_t, (4, 4), refs, sigma, g, CAPTIONS, capture_layers=select_layers(model.transformer, ["*"]),
                      with_placeholders=True)
    masks = (torch.rand(2, 2, 16, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    loss = {"diff": lambda: flow_matching_loss(pred, lat, noise),
            "route": lambda: routing_loss(cap.stacked_route(), masks),
            "holder": lambda: placeholder_loss(cap.stacked_holder(), torch.tensor([[0, 0], [1, 1]]))}[loss_name]()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss_name", ["diff", "route", "holder"])
def test_each_loss_reaches_lora_and_embeddings(loss_name: str) -> None:
    grads = grads_from(loss_name)
    nonzero = {n for n, gr in grads.items() if gr.abs().sum() > 0}
    assert {"task_embedding", "idx_embedding"} <= nonzero
    assert any("attn.to_q.lora_A" in n for n in nonzero) and any("attn.to_k.lora_B" in n for n in nonzero)
    if loss_name != "route":  # route at layer 0 of a 1-double-block model never sees the text keys
        assert "t5_embedding" in nonzero


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    plain, ckpt = grads_from("route"), grads_from("route", checkpointing=True)
    assert plain.keys() == ckpt.keys()
    for n in plain:
        assert torch.allclose(plain[n], ckpt[n], atol=1e-6), n
