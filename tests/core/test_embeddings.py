"""Condition embeddings against a per-token loop; index and table validation messages."""

import pytest
import torch

from dreamo_core.conditioning.embeddings import (
    ConditionEmbeddings,
    batched_condition_embeddings,
    build_condition_embeddings,
    check_reference_indices,
)
from dreamo_core.spec import DreamOSpec

TINY = DreamOSpec(hidden_size=8, num_double_blocks=1, num_single_blocks=1, t5_dim=4)


def tables(d: int = 8) -> ConditionEmbeddings:
    g = torch.Generator().manual_seed(0)
    return ConditionEmbeddings(torch.randn(2, d, generator=g), torch.randn(10, d, generator=g))


def test_against_per_token_loop():
    t = tables()
    target, counts, indices = 5, [3, 2, 4], [2, 9, 1]
    got = build_condition_embeddings(t, target, counts, indices)
    expected = torch.empty(target + sum(counts), 8)
    pos = 0
    for _ in range(target):
        expected[pos] = t.task[1]
        pos += 1
    for n, k in zip(counts, indices):
        for _ in range(n):
            expected[pos] = t.task[0] + t.idx[k]
            pos += 1
    assert got.shape == (14, 8)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_no_refs_gives_task1_everywhere():
    t = tables()
    got = build_condition_embeddings(t, 4, [], [])
    assert torch.equal(got, t.task[1].expand(4, 8))


def test_index_row_zero_never_used():
    t = tables()
    t2 = ConditionEmbeddings(t.task, t.idx.clone())
    t2.idx[0] += 100.0
    assert torch.equal(build_condition_embeddings(t, 2, [3], [4]), build_condition_embeddings(t2, 2, [3], [4]))


@pytest.mark.parametrize(
    "indices, message",
    [
        ([0], r"reference index 0 is out of range; DreamO supports indices 1-9"),
        ([10], r"reference index 10 is out of range; DreamO supports indices 1-9"),
        ([True], r"reference index True is out of range"),
        ([1.0], r"reference index 1\.0 is out of range"),
        (["1"], r"reference index '1' is out of range"),
        ([2, 2], r"reference index 2 is used twice; each reference needs its own index"),
    ],
)
def test_bad_indices(indices, message):
    with pytest.raises(ValueError, match=message):
        check_reference_indices(indices, 9)
    with pytest.raises(ValueError, match=message):
        build_condition_embeddings(tables(), 2, [1] * len(indices), indices)


def test_counts_and_indices_must_pair_up():
    with pytest.raises(ValueError, match=r"2 token counts but 1 indices"):
        build_condition_embeddings(tables(), 2, [1, 1], [1])


def test_negative_token_counts_rejected():
    with pytest.raises(ValueError, match=r"token counts must be non-negative"):
        build_condition_embeddings(tables(), 2, [-1], [1])


def test_validate_accepts_spec_shapes():
    t = tables()
    assert t.validate(TINY) is t
    assert (t.hidden_size, t.max_index) == (8, 9)


@pytest.mark.parametrize(
    "task_shape, idx_shape, message",
    [
        ((3, 8), (10, 8), r"my\.safetensors: dreamo_task_embedding has shape \(3, 8\), expected \(2, 8\)"),
        ((2, 8), (2, 8), r"my\.safetensors: dreamo_idx_embedding has shape \(2, 8\), expected \(10, 8\)"),
        ((2, 7), (10, 8), r"dreamo_task_embedding has shape \(2, 7\), expected \(2, 8\)"),
        ((2, 8), (10,), r"dreamo_idx_embedding has shape \(10,\), expected \(10, 8\)"),
    ],
)
def test_validate_names_tensor_and_expected_shape(task_shape, idx_shape, message):
    with pytest.raises(ValueError, match=message):
        ConditionEmbeddings(torch.zeros(task_shape), torch.zeros(idx_shape)).validate(TINY, "my.safetensors")


def test_validate_rejects_integer_tables_and_non_tensors():
    with pytest.raises(ValueError, match=r"dreamo_task_embedding must be floating point, got torch\.int64"):
        ConditionEmbeddings(torch.zeros(2, 8, dtype=torch.long), torch.zeros(10, 8)).validate(TINY)
    with pytest.raises(ValueError, match=r"dreamo_idx_embedding has shape list"):
        ConditionEmbeddings(torch.zeros(2, 8), [[0.0] * 8] * 10).validate(TINY)  # type: ignore[arg-type]


def test_validate_rejects_float8_tables_with_the_fix():
    f8 = torch.zeros(2, 8).to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match=r"^emb\.safetensors: dreamo_task_embedding is stored as float8_e4m3fn; "
                                         r"DreamO's tables must be 16-, 32- or 64-bit floats .*convert"):
        ConditionEmbeddings(f8, torch.zeros(10, 8)).validate(TINY, "emb.safetensors")
    ConditionEmbeddings(torch.zeros(2, 8, dtype=torch.bfloat16), torch.zeros(10, 8, dtype=torch.float16)).validate(TINY)


def test_batch_items_get_their_own_indices_and_zeros_without_dreamo():
    """Per batch item: the rows of its own reference indices (regions of two Apply nodes batched together), exact
    zeros for an item without DreamO; one index list for all items is the same row block broadcast."""
    t = tables()
    got = batched_condition_embeddings(t, 2, [3], [(1,), None, (7,)])
    assert got.shape == (3, 5, 8)
    for b, k in ((0, 1), (2, 7)):
        torch.testing.assert_close(got[b], build_condition_embeddings(t, 2, [3], [k]), rtol=0, atol=0)
        assert torch.equal(got[b, 2:], (t.task[0] + t.idx[k]).expand(3, -1))
    assert torch.equal(got[1], torch.zeros(5, 8))
    same = batched_condition_embeddings(t, 2, [3], [(4,), (4,)])
    assert torch.equal(same[0], same[1]) and torch.equal(same[0], build_condition_embeddings(t, 2, [3], [4]))


def test_to_changes_dtype():
    t = tables().to(dtype=torch.bfloat16)
    assert t.task.dtype == t.idx.dtype == torch.bfloat16
