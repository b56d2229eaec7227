"""training/memory_plan.py's counting against hand-computed values: saved-tensor bytes per block (dedupe by
storage, parameters excluded, the checkpointed formula), the flash-attention accounting of SDPA, and the LoRA
parameter count of FLUX.1-dev on meta against the rank x (in + out) formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dreamo_core.spec import FLUX_DEV
from training.memory_plan import FlashAttentionAccounting, meta_transformer, saved_tensor_count


class Save(torch.autograd.Function):
    """Identity that saves exactly the tensors given."""

    @staticmethod
    def forward(ctx, x, *extra):
        ctx.save_for_backward(x, *extra)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return (grad, *[None] * (len(ctx.saved_tensors) - 1))


class Block(nn.Module):
    def __init__(self, extra_elems: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(5))
        self.extra = extra_elems

    def forward(self, x):
        y = Save.apply(x, torch.ones(self.extra), self.w)  # x: its input; a new fp32 tensor; a parameter
        return Save.apply(y, y[:2])  # y again through a view: the same storage, counted once


def test_saved_bytes_per_block_dedupe_and_checkpointed_formula() -> None:
    blocks = {"a": Block(10), "b": Block(30)}
    model = nn.ModuleDict(blocks)
    x = torch.ones(4, requires_grad=True)
    with saved_tensor_count(model, blocks) as saved:
        h = Save.apply(x * 2, torch.ones(3, dtype=torch.bfloat16))  # outside: x*2 (16 B) + 3 bf16 (6 B)
        h = blocks["a"](h)
        h = blocks["b"](h)
    assert saved.outside == 16 + 6
    # each block: its input (16 B) + its new fp32 tensor + its y (16 B, saved twice, once as a view); no parameter
    assert saved.per_block == {"a": 16 + 40 + 16, "b": 16 + 120 + 16}
    assert saved.block_inputs == 16 + 16  # the inputs of a and b
    assert saved.total == 22 + 72 + 152
    assert saved.checkpointed == 22 + 32 + 152  # outside + all block inputs + the largest block


def test_sdpa_is_counted_as_flash_attention() -> None:
    b, h, n, d = 1, 4, 256, 64
    with torch.device("meta"):
        q = torch.empty(b, h, n, d, dtype=torch.bfloat16, requires_grad=True)
    block = nn.Identity()
    with FlashAttentionAccounting(), saved_tensor_count(block, {}) as saved:
        out = F.scaled_dot_product_attention(q, q * 1, q * 2)
    assert out.shape == (b, h, n, d) and out.device.type == "meta"
    qkv_out = 4 * b * h * n * d * 2  # q, k, v, out in bf16
    lse = b * h * n * 4  # fp32 log-sum-exp
    philox = 2 * 8 + 8  # the RNG seed (2 uint64) and offset (1 uint64) flash attention keeps
    assert saved.outside == qkv_out + lse + philox
    assert saved.outside < b * h * n * n * 4  # far below one fp32 L x L matrix, which the math kernel saves


def test_lora_parameters_of_flux_dev_on_meta() -> None:
    t = meta_transformer(lora_rank=128)
    assert all(p.device.type == "meta" for p in t.parameters())
    d, r = FLUX_DEV.hidden_size, 128
    double = 8 * r * (d + d)  # to_q/k/v, to_out.0, add_q/k/v_proj, to_add_out: all D -> D
    single = 3 * r * (d + d) + r * (FLUX_DEV.single_proj_in + d)  # to_q/k/v + proj_out (D + MLP -> D)
    want = FLUX_DEV.num_double_blocks * double + FLUX_DEV.num_single_blocks * single
    assert sum(p.numel() for p in t.parameters() if p.requires_grad) == want
    assert {p.dtype for p in t.parameters() if p.requires_grad} == {torch.float32}
    assert 11.8e9 < sum(p.numel() for p in t.parameters() if not p.requires_grad) < 12.0e9  # FLUX.1-dev: 11.9 B


def test_preference_plan_layout_and_step_flops() -> None:
    from bench.flops import forward_flops, tokens_for
    from training.memory_plan import T5_XXL, GiB, SavedBytes, stage_plans, step_seconds

    saved = {1: SavedBytes(outside=2 * GiB, per_block={"a": GiB, "b": 3 * GiB}, block_inputs=GiB // 2)}
    ddp_off, fsdp_off, ddp_on, fsdp_on = stage_plans("preference", saved, 0, 1_000_000, 8 * GiB, GiB, GiB // 4, 8)
    assert (ddp_off.strategy, fsdp_off.strategy, ddp_on.checkpointing) == ("DDP", "FSDP", True)
    assert ddp_off.dit_activations == 6.0 and ddp_on.dit_activations == 2 + 0.5 + 3  # all / outside + inputs + largest
    assert ddp_off.t5_activations == 0.0  # tables frozen: T5 runs without gradients
    assert ddp_off.weights == 9.0 and fsdp_off.weights == 8 / 8 + 1 + 2 * 2 * 0.25
    assert ddp_off.training_state == 1_000_000 * (4 + 4 + 8 + 4) / GiB  # fp32 LoRA, grads, AdamW, DDP buckets
    assert fsdp_on.training_state == 1_000_000 * (4 + 4 + 8) / 8 / GiB
    fwd = 2 * forward_flops(tokens_for(512, 512) * 2).total  # one sample: 512² target + one 512² reference
    d, ff = T5_XXL["d_model"], T5_XXL["d_ff"]
    t5 = 2 * 24 * 512 * (4 * d * d + 3 * d * ff)
    # one pair: 2 samples x (forward + backward = 2 forwards), the reference pass 2 x 1 forward, 4 T5 forwards
    assert step_seconds("preference", 1, False, 512, 512)[0] * 1e12 == pytest.approx(6 * fwd + 4 * t5, rel=1e-12)
    assert step_seconds("preference", 1, True, 512, 512)[0] * 1e12 == pytest.approx(8 * fwd + 4 * t5, rel=1e-12)
    assert step_seconds("dreamo", 1, False, 512, 512)[0] * 1e12 == pytest.approx(2 * fwd + 2 * t5, rel=1e-12)
