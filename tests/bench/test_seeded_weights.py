"""bench.seeded_weights: one tensor's values depend only on the run's seed and the tensor's name (so every
variant and every diffusers version builds the same weights), with PyTorch's default-init distribution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.seeded_weights import materialize_seeded, seeded_state_dict

pytest.importorskip("diffusers")


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.proj = nn.Linear(width, 2 * width)
        self.norm = nn.LayerNorm(2 * width)


def test_a_tensor_depends_on_its_name_not_on_the_module_around_it():
    a = nn.ModuleDict({"x": Block(64), "y": Block(64)})
    b = nn.ModuleDict({"y": Block(64), "extra": nn.Linear(3, 3), "x": Block(64)})  # other order, more modules
    sa, sb = seeded_state_dict(a, 0, "cpu", torch.float32), seeded_state_dict(b, 0, "cpu", torch.float32)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert not torch.equal(sa["x.proj.weight"][:, :64], sa["y.proj.weight"][:, :64])  # two tensors, two draws
    other_seed = seeded_state_dict(a, 1, "cpu", torch.float32)
    assert not torch.equal(other_seed["x.proj.weight"], sa["x.proj.weight"])


def test_values_follow_the_default_init():
    sd = seeded_state_dict(Block(256), 0, "cpu", torch.float32)
    bound = 256 ** -0.5  # kaiming_uniform(a=sqrt(5)) of nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias too
    for k in ("proj.weight", "proj.bias"):
        assert sd[k].abs().max() <= bound and sd[k].abs().max() > 0.9 * bound
        assert sd[k].std().item() == pytest.approx(bound / 3**0.5, rel=0.1)
    assert torch.equal(sd["norm.weight"], torch.ones(512)) and torch.equal(sd["norm.bias"], torch.zeros(512))


def test_materialized_meta_module_holds_the_state_dict():
    from dreamo_core.generator.tiny import flux_transformer

    model = materialize_seeded(flux_transformer(0, "meta", None), 3, "cpu", torch.bfloat16)
    want = seeded_state_dict(flux_transformer(0, "meta", None), 3, "cpu", torch.bfloat16)
    assert all(p.device.type == "cpu" and p.dtype == torch.bfloat16 and not p.requires_grad for p in model.parameters())
    assert model.state_dict().keys() == want.keys()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
