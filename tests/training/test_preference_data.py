"""Pair rows and the on-policy pair builder: the builder's rows are the sampler's images, paired by the stated rule,
with deterministic seeds, and pass the row check; the region's token weights equal the box enlarged by α and
pooled by hand; bad pair rows give one clear reason each (``metadata.jsonl:LINE: ...``), and the command exits 2;
``trainer_sampler`` is the trainer's own sampler."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamo_core.generator.flux_forward import ReferenceTokens
from training.codec import PixelCodec, decode_tokens, encode_tokens
from training.config import ModelConfig
from training.data import DatasetError, load_rgb
from training.model import build_model
from training.preference.dataset import load_pair, read_pairs
from training.preference.pairs import (
    PairPrompt,
    PairReference,
    build_preference_pairs,
    choose_pairs,
    trainer_sampler,
)
from training.sampling import euler_sample

BUCKETS = [[64, 64]]


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("scores", "gap", "most", "want"), [
    ([1.0, 0.0, 1.0, 0.0], 0.5, 1, [(0, 1)]),
    ([1.0, 0.0, 1.0, 0.0], 0.5, 4, [(0, 1), (2, 3)]),
    ([0.9, 0.9, 0.5, 0.1, 0.3], 0.5, 3, [(0, 3), (1, 4)]),  # 0.1 and 0.3 are 0.5 below the best: worst first
    ([0.2, 0.9, 0.5, 0.1], 0.3, 3, [(1, 3)]),  # one best sample: one pair
    ([1.0, 1.0, 1.0], 0.5, 2, []),  # always right: no preference to learn
    ([0.0, 0.0], 0.5, 2, []),  # always wrong too
], ids=["one", "two", "gap", "single-best", "all-good", "all-bad"])
def test_choose_pairs(scores, gap, most, want) -> None:
    assert choose_pairs(scores, gap, most) == want


def test_builder_writes_the_samplers_images_paired_by_score(pair_dir: Path, pair_world, tmp_path: Path) -> None:
    rows = rows_of(pair_dir)
    assert len(rows) == 6  # six prompts, seeds 2p (right colour) and 2p + 1 (wrong): one pair each
    log = [json.loads(line) for line in (pair_dir / "scores.jsonl").read_text().splitlines()]
    assert [e["seeds"] for e in log] == [[2 * p, 2 * p + 1] for p in range(6)]
    assert all(e["scores"] == [1.0, 0.0] and e["pairs"] == [[0, 1]] for e in log)
    prompts = pair_world.prompts(tmp_path / "prompts")
    for p, row in enumerate(rows):
        for key, seed in (("preferred", 2 * p), ("rejected", 2 * p + 1)):
            want = (pair_world.sample(prompts[p], seed).numpy() * 255).round().astype(np.uint8)
            assert np.array_equal(np.asarray(Image.open(pair_dir / row[key])), want), (p, key)
        assert row["region_box"] == list(prompts[p].region_box) and row["caption"] == prompts[p].caption
        ref = pair_dir / row["references"][0]["image"]
        assert Image.open(ref).tobytes() == Image.open(prompts[p].references[0].image).tobytes()
    assert len(read_pairs(pair_dir, BUCKETS, 32, need_region=True)) == 6  # the stage's row check accepts them
    again = build_preference_pairs(prompts, pair_world.sample, pair_world.score, tmp_path / "again",
                                   samples_per_prompt=2)
    assert (tmp_path / "again" / "metadata.jsonl").read_text() == (pair_dir / "metadata.jsonl").read_text()
    assert again.pairs == 6 and again.prompts_paired == 6
    with pytest.raises(ValueError, match="none of the 6 prompts gave a pair"):
        build_preference_pairs(prompts, pair_world.sample, lambda prompt, image: 1.0, tmp_path / "none")


def test_region_token_weights_are_the_dilated_box_pooled(pair_dir: Path) -> None:
    row = read_pairs(pair_dir, BUCKETS, 32)[0]  # box (4, 4, 36, 36) in a 64 x 64 target
    region = load_pair(row, 32, False, 1.25).region  # 32 px -> 40 px about (20, 20): pixels 0..40
    covered = np.zeros((64, 64))
    covered[0:40, 0:40] = 1.0
    want = covered.reshape(4, 16, 4, 16).mean(axis=(1, 3)).flatten()  # each 16 x 16 token's share
    assert region.tolist() == pytest.approx(want.tolist())
    assert load_pair(row, 32, False, 1.0).region.tolist() == pytest.approx(
        np.pad(np.ones((32, 32)), ((4, 28), (4, 28))).reshape(4, 16, 4, 16).mean(axis=(1, 3)).flatten().tolist())


def bad_rows(folder: Path, rows: list[dict]) -> Path:
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def pairs_copy(pair_dir: Path, tmp_path: Path) -> tuple[Path, dict]:
    folder = tmp_path / "pairs"
    shutil.copytree(pair_dir, folder)
    Image.new("RGB", (48, 64)).save(folder / "small.png")
    Image.new("L", (64, 64), 0).save(folder / "black.png")
    Image.new("L", (64, 48), 255).save(folder / "short.png")
    (folder / "text.png").write_text("not an image")
    return folder, rows_of(pair_dir)[0]


@pytest.mark.parametrize(("change", "words"), [
    (lambda r: r.pop("rejected"), "missing key 'rejected'"),
    (lambda r: r.update(rejected="nope.png"), "rejected file not found: 'nope.png'"),
    (lambda r: r.update(rejected=r["preferred"]), "preferred and rejected are the same file"),
    (lambda r: r.update(rejected="small.png"), "rejected 'small.png' is 48x64 but preferred"),
    (lambda r: r.update(rejected="text.png"), "rejected 'text.png' does not decode as an image"),
    (lambda r: r.update(region="short.png"), "give region (a mask) or region_box, not both"),
    (lambda r: (r.pop("region_box"), r.update(region="short.png")), "region 'short.png' is 64x48 but the targets"),
    (lambda r: (r.pop("region_box"), r.update(region="black.png")), "region 'black.png' is black everywhere"),
    (lambda r: r.update(region_box=[10, 10, 10, 20]), "region_box must be [x0, y0, x1, y1]"),
    (lambda r: r.update(region_box=[0, 0, 65, 20]), "0 <= x0 < x1 <= 64"),
    (lambda r: r.pop("region_box"), "preference.localized: true needs a region"),
    (lambda r: r.update(target="x.png"), "unknown key(s) ['target']"),
    (lambda r: r.update(caption="a disc"), "caption placeholders [] do not match the reference indices [1]"),
], ids=["no-rejected", "rejected-missing", "same-file", "size", "undecodable", "both-regions", "region-size",
        "region-empty", "box-empty", "box-outside", "localized-no-region", "unknown-key", "placeholders"])
def test_bad_pair_rows_give_one_clear_reason(pairs_copy, change, words) -> None:
    folder, good = pairs_copy
    row = json.loads(json.dumps(good))
    change(row)
    bad_rows(folder, [good, row])
    with pytest.raises(DatasetError) as info:
        read_pairs(folder, BUCKETS, 32, need_region=True)
    assert str(info.value).startswith(f"{folder / 'metadata.jsonl'}:2: bad row: ") and words in str(info.value), info.value


def test_a_bad_pair_row_makes_the_command_exit_2(pairs_copy, pair_overrides_for, config_file, tmp_path: Path,
                                                capsys) -> None:
    from training.preference.command import main

    folder, good = pairs_copy
    bad_rows(folder, [good, dict(good, rejected="small.png")])
    config = config_file(tmp_path / "c.yaml", pair_overrides_for(tmp_path / "run") + [
        f"--data.datasets={{pairs: '{folder}'}}"])
    assert main([str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("training.preference: error: ") and "metadata.jsonl:2: bad row: rejected" in err[-1]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_trainer_sampler_is_the_trainers_sampler(pair_dir: Path) -> None:
    model = build_model(ModelConfig(num_layers=1, num_single_layers=1, lora_rank=4)).eval()
    ref = pair_dir / "refs" / "00002.png"
    prompt = PairPrompt("a [ref#1] on a gray floor", (PairReference(ref, "ip", 1),))
    got = trainer_sampler(model, PixelCodec(), (64, 64), 32, steps=3, true_cfg=2.0)(prompt, 5)
    tokens, grid = encode_tokens(PixelCodec(), load_rgb(ref)[None])  # 32 x 32 on white: already at ref_res 32
    with torch.no_grad():
        z = euler_sample(model, (4, 4), [ReferenceTokens(tokens, grid, 1)], [prompt.caption], steps=3, seed=5,
                         true_cfg=2.0)
    want = decode_tokens(PixelCodec(), z, (4, 4))[0].clamp(0, 1)
    assert got.shape == (64, 64, 3) and torch.equal(got, want)


def test_outside_change_counts_only_pixels_outside_the_dilated_box() -> None:
    from training.preference.measure import outside_change

    before = torch.zeros(10, 10, 3)
    after = before.clone()
    after[2:6, 2:6] = 1.0  # inside the box (2, 2, 6, 6); enlarged by 1.5 it is pixels 1..6 (x1 / y1 exclusive: 7)
    after[1, 1] = 1.0  # in the enlarged box's ring only
    assert outside_change(before, after, (2, 2, 6, 6), 1.5) == 0.0
    assert outside_change(before, after, (2, 2, 6, 6), 1.0) == pytest.approx(3 / ((100 - 16) * 3))
    after[9, 9, 0] = 0.6  # one channel of one pixel outside both
    assert outside_change(before, after, (2, 2, 6, 6), 1.5) == pytest.approx(0.6 / ((100 - 36) * 3))
    with pytest.raises(ValueError, match="covers the image"):
        outside_change(before, after, (0, 0, 10, 10), 1.0)


def test_pair_rows_carry_placement_boxes_to_the_batch(pairs_copy, tmp_path: Path) -> None:
    """A PairReference's box is written to the row; with data.placement box the row check reads it (the bucket key
    keeps boxes apart) and the pair batch hands it to the forward; the default placement ignores it."""
    from dreamo_core.conditioning.placement import Box as PlacementBox
    from training.data import BatchPlan
    from training.preference.batch import make_pair_batch
    from training.preference.pairs import pair_row

    folder, good = pairs_copy
    prompt = PairPrompt("[ref#1] in a corner", (PairReference(folder / good["references"][0]["image"], "ip", 1,
                                                              PlacementBox(0.0, 0.0, 0.5, 0.5)),))
    row = pair_row(prompt, good["preferred"], good["rejected"], {prompt.references[0].image.resolve(): "r.png"})
    assert row["references"] == [{"image": "r.png", "task": "ip", "index": 1, "box": [0.0, 0.0, 0.5, 0.5]}]
    shutil.copy(folder / good["references"][0]["image"], folder / "r.png")
    other = json.loads(json.dumps(row))
    other["references"][0]["box"] = [0.5, 0.5, 0.5, 0.5]
    bad_rows(folder, [row, other])
    placed = read_pairs(folder, BUCKETS, 32, placement="box")
    assert [r.refs[0].box for r in placed] == [PlacementBox(0.0, 0.0, 0.5, 0.5), PlacementBox(0.5, 0.5, 0.5, 0.5)]
    assert placed[0].bucket != placed[1].bucket  # one id table per batch
    assert [r.refs[0].box for r in read_pairs(folder, BUCKETS, 32)] == [None, None]
    batch = make_pair_batch(BatchPlan([placed[1]], [False], 0, "pairs"), PixelCodec(), 32, 1.2, torch.device("cpu"))
    assert batch.refs[0].box == PlacementBox(0.5, 0.5, 0.5, 0.5)
