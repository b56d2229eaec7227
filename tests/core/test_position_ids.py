"""DreamO RoPE ids: a literal hand-written table, the spec's worked example, per-axis advance, bf16 rounding."""

import pytest
import torch

from dreamo_core.conditioning.position_ids import (
    dreamo_position_ids,
    grid_position_ids,
    reference_offsets,
    token_grid,
)


def test_small_case_hand_written_table():
    # target 2x3 tokens, ref1 2x2 (starts at row 2, col 3), ref2 1x3 (starts at row 2+2=4, col 3+2=5)
    expected = [
        # target
        (0, 0, 0), (0, 0, 1), (0, 0, 2),
        (0, 1, 0), (0, 1, 1), (0, 1, 2),
        # ref 1
        (0, 2, 3), (0, 2, 4),
        (0, 3, 3), (0, 3, 4),
        # ref 2
        (0, 4, 5), (0, 4, 6), (0, 4, 7),
    ]
    ids = dreamo_position_ids((2, 3), [(2, 2), (1, 3)])
    assert ids.dtype == torch.float32
    assert ids.shape == (13, 3)
    assert [tuple(int(v) for v in row) for row in ids.tolist()] == expected


def test_no_refs_is_plain_grid():
    assert [tuple(r) for r in dreamo_position_ids((1, 2), []).tolist()] == [(0, 0, 0), (0, 0, 1)]


def test_spec_worked_example_1024_with_two_512_refs():
    ids = dreamo_position_ids((64, 64), [(32, 32), (32, 32)])
    assert ids.shape == (4096 + 1024 + 1024, 3)
    target, ref1, ref2 = ids[:4096], ids[4096:5120], ids[5120:]
    assert (ids[:, 0] == 0).all()
    for part, lo, hi in ((target, 0, 63), (ref1, 64, 95), (ref2, 96, 127)):
        for axis in (1, 2):
            assert (part[:, axis].min().item(), part[:, axis].max().item()) == (lo, hi)


def test_non_square_refs_advance_rows_and_cols_independently():
    assert reference_offsets((4, 6), [(2, 5), (3, 1), (1, 1)]) == [(4, 6), (6, 11), (9, 12)]
    ids = dreamo_position_ids((4, 6), [(2, 5), (3, 1)])
    ref2 = ids[24 + 10 :]
    assert [tuple(int(v) for v in r) for r in ref2.tolist()] == [(0, 6, 11), (0, 7, 11), (0, 8, 11)]


def official_ids(rows: int, cols: int, start_r: int, start_c: int, dtype: torch.dtype) -> torch.Tensor:
    """The official ``_prepare_latent_image_ids`` construction: float32 zeros + arange + start, then cast."""
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(rows)[:, None] + start_r
    ids[..., 2] = ids[..., 2] + torch.arange(cols)[None, :] + start_c
    return ids.reshape(rows * cols, 3).to(dtype)


def test_bf16_ids_round_above_256_like_the_official_code():
    target, refs = (20, 17), [(64, 64), (64, 64), (64, 64), (64, 64)]
    ids = dreamo_position_ids(target, refs, dtype=torch.bfloat16)
    assert ids.dtype == torch.bfloat16
    parts = [official_ids(*target, 0, 0, torch.bfloat16)]
    r0, c0 = target
    for rows, cols in refs:
        parts.append(official_ids(rows, cols, r0, c0, torch.bfloat16))
        r0, c0 = r0 + rows, c0 + cols
    expected = torch.cat(parts)
    assert torch.equal(ids, expected)
    # rounding really happens here: 257 is not representable in bf16 and must not survive
    rows_f32 = dreamo_position_ids(target, refs)[:, 1]
    assert rows_f32.max() == 20 + 4 * 64 - 1
    assert (ids[:, 1].float() != rows_f32).any()
    assert 257.0 not in ids[:, 1].float().tolist()
    # the same, one value at a time, the official way
    assert (torch.arange(5) + 255).to(torch.bfloat16).float().tolist() == [255, 256, 256, 258, 260]


def test_grid_position_ids_validates():
    with pytest.raises(ValueError, match=r"token grid must be non-empty, got 0x3"):
        grid_position_ids(0, 3)
    with pytest.raises(ValueError, match=r"token grid must be non-empty"):
        dreamo_position_ids((2, 2), [(1, -1)])


def test_token_grid_rounds_up_odd_latents():
    assert token_grid((128, 96)) == (64, 48)
    assert token_grid((127, 97)) == (64, 49)
