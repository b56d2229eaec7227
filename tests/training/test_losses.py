"""dreamo_core.routing.losses against hand-computed values and an independent loop implementation."""

from __future__ import annotations

import math

import pytest
import torch

from dreamo_core.routing.losses import (
    flow_matching_loss,
    noisy_latents,
    placeholder_logits,
    placeholder_logits_per_reference,
    placeholder_loss,
    reference_response,
    reference_responses,
    routing_loss,
    routing_target,
)


def test_flow_matching_by_hand() -> None:
    z0, noise = torch.ones(2, 3, 4), torch.full((2, 3, 4), 3.0)
    assert torch.allclose(noisy_latents(z0, noise, torch.tensor([0.25, 1.0]))[:, 0, 0], torch.tensor([1.5, 3.0]))
    assert flow_matching_loss(torch.zeros(2, 3, 4), z0, noise).item() == pytest.approx(4.0)  # target eps - z0 = 2


def test_reference_response_by_hand() -> None:
    q = torch.tensor([math.log(2.0)]).reshape(1, 1, 1, 1)  # B=1, Lr=1, H=1, d=1
    k = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1)  # N=2
    # logits [ln2, 0] -> softmax [2/3, 1/3] -> density x N=2
    assert torch.allclose(reference_response(q, k, "softmax"), torch.tensor([[4 / 3, 2 / 3]]))
    assert torch.allclose(reference_response(q, k, "logits"), torch.tensor([[math.log(2.0), 0.0]]))
    with pytest.raises(ValueError, match="mode"):
        reference_response(q, k, "bogus")


def test_reference_response_matches_loop() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 2, 4, generator=g), torch.randn(2, 5, 2, 4, generator=g)
    want_soft, want_log = torch.zeros(2, 5), torch.zeros(2, 5)
    for b in range(2):
        for h in range(2):
            for r in range(3):
                logits = [sum(q[b, r, h, c] * k[b, n, h, c] for c in range(4)) / 2.0 for n in range(5)]
                z = sum(math.exp(x) for x in logits)
                for n in range(5):
                    want_soft[b, n] += math.exp(logits[n]) / z * 5 / 6
                    want_log[b, n] += logits[n] / 6
    assert torch.allclose(reference_response(q, k, "softmax"), want_soft, atol=1e-5)
    assert torch.allclose(reference_response(q, k, "logits"), want_log, atol=1e-5)


def test_routing_target_and_loss_by_hand() -> None:
    assert torch.equal(routing_target(torch.tensor([[1.0, 1.0, 0.0, 0.0]])), torch.tensor([[2.0, 2.0, 0.0, 0.0]]))
    responses = torch.tensor([4 / 3, 2 / 3]).reshape(1, 1, 1, 2)
    mask = torch.tensor([1.0, 0.0]).reshape(1, 1, 2)  # target density [2, 0]
    assert routing_loss(responses, mask).item() == pytest.approx(4 / 9)
    assert routing_loss(responses, mask, mode="logits").item() == pytest.approx(((1 / 3) ** 2 + (2 / 3) ** 2) / 2)
    # two layers average; an empty mask is dropped (counts as zero over n_refs * B pairs)
    two = torch.cat([responses, torch.tensor([2.0, 0.0]).reshape(1, 1, 1, 2)])
    assert routing_loss(two, mask).item() == pytest.approx(2 / 9)
    masks2 = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])
    assert routing_loss(responses.expand(1, 2, 1, 2), masks2).item() == pytest.approx(4 / 9 / 2)
    with pytest.raises(ValueError, match="routing_loss"):
        routing_loss(responses, torch.ones(2, 1, 2))


def test_placeholder_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [3.0, 0.0]]).reshape(1, 2, 1, 2)  # two ref tokens, mean query [2, 0]
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    assert torch.allclose(placeholder_logits(q, k), torch.tensor([[math.sqrt(2.0), 0.0]]))
    logits = torch.zeros(1, 2, 1, 2)  # softmax [.5, .5] vs one-hot -> 0.25 + 0.25
    targets = torch.tensor([[0], [1]])
    assert placeholder_loss(logits, targets).item() == pytest.approx(0.5)
    assert placeholder_loss(logits, targets, torch.tensor([[1.0], [0.0]])).item() == pytest.approx(0.25)
    sharp = torch.tensor([[[[20.0, 0.0]], [[0.0, 20.0]]]])
    assert placeholder_loss(sharp, targets).item() < 1e-12


@pytest.mark.parametrize("mode", ["softmax", "logits"])
def test_batched_responses_equal_one_reference_at_a_time(mode: str) -> None:
    g = torch.Generator().manual_seed(3)
    spans = [(0, 3), (3, 4), (4, 9)]  # uneven lengths, one single-token reference
    q, k_img, k_txt = (torch.randn(2, m, 4, 8, generator=g) for m in (9, 6, 3))
    loop_route = torch.stack([reference_response(q[:, s:e], k_img, mode) for s, e in spans])
    loop_holder = torch.stack([placeholder_logits(q[:, s:e], k_txt) for s, e in spans])
    assert torch.allclose(reference_responses(q, k_img, spans, mode), loop_route, atol=1e-6)
    assert torch.allclose(placeholder_logits_per_reference(q, k_txt, spans), loop_holder, atol=1e-6)


def test_batched_responses_reject_bad_spans() -> None:
    q, k = torch.zeros(1, 4, 1, 2), torch.zeros(1, 3, 1, 2)
    with pytest.raises(ValueError, match=r"span_means: span \(2, 2\) is empty"):
        reference_responses(q, k, [(0, 2), (2, 2)])
    with pytest.raises(ValueError, match="mode must be one of"):
        reference_responses(q, k, [(0, 4)], "attention")
