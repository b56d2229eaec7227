"""data.placement: box — each reference's placement box from its row (or its mask's bounding box), carried through
row checks, buckets, batches and the trainer's forward (DreamFuse's positional affine in training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamo_core.conditioning.placement import Box, placed_reference_ids
from training.batch import make_batch
from training.codec import PixelCodec
from training.config import load_config
from training.data import BatchSampler, DatasetError, read_metadata


def write_dataset(folder: Path, rows: list[dict], size: tuple[int, int] = (64, 64)) -> Path:
    """Rows over one white target (h, w) and a 32-px reference; ``mask`` entries name masks written from arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 200, np.uint8)).save(folder / "t.png")
    Image.fromarray(np.full((32, 32, 3), 50, np.uint8)).save(folder / "r.png")
    lines = []
    for i, row in enumerate(rows):
        refs = []
        for j, r in enumerate(row["refs"]):
            ref = {"image": "r.png", "task": "ip", "index": j + 1}
            if "mask" in r:
                Image.fromarray(r["mask"].astype(np.uint8) * 255).save(folder / f"m{i}_{j}.png")
                ref["mask"] = f"m{i}_{j}.png"
            if "box" in r:
                ref["box"] = r["box"]
            refs.append(ref)
        caption = " and ".join(f"[ref#{j + 1}]" for j in range(len(refs)))
        lines.append(json.dumps({"target": "t.png", "caption": caption, "references": refs}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_row_box_and_mask_bounding_box(tmp_path):
    mask = np.zeros((64, 64), bool)
    mask[8:24, 40:60] = True  # rows 8..23, cols 40..59
    folder = write_dataset(tmp_path / "ds", [{"refs": [{"box": [0.25, 0.5, 0.5, 0.25]}, {"mask": mask}]}])
    row = read_metadata(folder, [[64, 64]], 32, placement="box")[0]
    assert row.refs[0].box == Box(0.25, 0.5, 0.5, 0.25)
    assert row.refs[1].box == Box(40 / 64, 8 / 64, 20 / 64, 16 / 64)  # the mask's bounding box, written out by hand
    assert row.bucket[3] == (row.refs[0].box, row.refs[1].box)
    diagonal = read_metadata(folder, [[64, 64]], 32)[0]  # default placement: boxes play no part
    assert [r.box for r in diagonal.refs] == [None, None] and diagonal.bucket[3] == (None, None)


def test_box_follows_the_buckets_centre_crop(tmp_path):
    """A 64 x 128 (h x w) target in a 64 x 64 bucket keeps its middle 64 columns (32..95): a box over columns
    64..95 is the right half of the kept part; one over columns 0..31 lies outside it."""
    folder = write_dataset(tmp_path / "wide", [{"refs": [{"box": [0.5, 0.0, 0.25, 1.0]}]}], size=(64, 128))
    assert read_metadata(folder, [[64, 64]], 32, placement="box")[0].refs[0].box == Box(0.5, 0.0, 0.5, 1.0)
    outside = write_dataset(tmp_path / "out", [{"refs": [{"box": [0.0, 0.0, 0.25, 1.0]}]}], size=(64, 128))
    with pytest.raises(DatasetError, match="outside the part of the target kept"):
        read_metadata(outside, [[64, 64]], 32, placement="box")


@pytest.mark.parametrize("ref, message", [
    ({"box": [0.1, 0.1, 0.5]}, r"references\[0\] box must be a list \[x, y, w, h\]"),
    ({"box": [0.8, 0.0, 0.5, 0.5]}, r"references\[0\] box: .*must lie inside the image"),
    ({"box": [0.0, 0.0, 0.0, 0.5]}, r"references\[0\] box: box width and height must be > 0"),
    ({}, r"data.placement box needs the reference's \"box\" or its \"mask\""),
    ({"mask": np.zeros((64, 64), bool)}, r"references\[0\] mask selects nothing"),
])
def test_bad_placement_rows_are_clear_errors(tmp_path, ref, message):
    folder = write_dataset(tmp_path / "bad", [{"refs": [ref]}])
    with pytest.raises(DatasetError, match=message):
        read_metadata(folder, [[64, 64]], 32, placement="box")


def test_batches_never_mix_boxes_and_carry_them_to_the_forward(tmp_path):
    boxes = [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]
    folder = write_dataset(tmp_path / "two", [{"refs": [{"box": boxes[i % 2]}]} for i in range(8)])
    rows = read_metadata(folder, [[64, 64]], 32, placement="box")
    sampler = BatchSampler({"d": rows}, 4, 0.0, seed=0)
    seen = set()
    for step in range(12):
        plan = sampler.plan(step, {"d": 1.0})
        assert len({r.refs[0].box for r in plan.rows}) == 1  # one id table per batch
        seen.add(plan.rows[0].refs[0].box)
        batch = make_batch(plan, PixelCodec(), 32, 0.0, torch.device("cpu"))
        assert batch.refs[0].box == plan.rows[0].refs[0].box
    assert seen == {Box(*b) for b in boxes}


def test_config_placement_is_checked():
    assert load_config(None, ["--data.placement=box"]).data.placement == "box"
    with pytest.raises(ValueError, match="data.placement: expected 'diagonal' or 'box'"):
        load_config(None, ["--data.placement=boxes"])


def test_trainer_forward_uses_the_rows_box(tmp_path, overrides_for):
    """The batch's box reaches the trainer's ids: the reference's ids are ``placed_reference_ids`` of its box."""
    from training.model import build_model

    folder = write_dataset(tmp_path / "one", [{"refs": [{"box": [0.25, 0.25, 0.5, 0.5]}]}] * 2)
    rows = read_metadata(folder, [[64, 64]], 32, placement="box")
    plan = BatchSampler({"d": rows}, 2, 0.0, seed=0).plan(0, {"d": 1.0})
    batch = make_batch(plan, PixelCodec(), 32, 0.0, torch.device("cpu"))
    cfg = load_config(None, overrides_for(tmp_path / "run"))
    model = build_model(cfg.model).eval()
    seen = {}
    handle = model.transformer.pos_embed.register_forward_pre_hook(lambda _m, args: seen.setdefault("ids", args[0]))
    with torch.no_grad():
        model(batch.latents, batch.grid, batch.refs, torch.full((2,), 0.5), torch.full((2,), 3.5), batch.captions)
    handle.remove()
    want = placed_reference_ids(batch.refs[0].grid, Box(0.25, 0.25, 0.5, 0.5), batch.grid)
    assert torch.equal(seen["ids"][-want.shape[0]:].float(), want)  # [text | target | reference] ids: the last rows


def test_reference_token_drop_per_dataset_group(dataset_dirs, tmp_path):
    """``ref_token_drop: {self: 0.95}`` drops reference tokens only in batches drawn from the ``self`` group (a
    quality stage that keeps rehearsing the other groups with their whole references)."""
    from training.objective import RoutingObjective

    stages = ("--stages=[{name: q, steps: 4, lr: 0.001, mixture: {subject: 1.0, self: 1.0}, "
              "ref_token_drop: {self: 0.95}}]")
    cfg = load_config(None, [f"--data.datasets={{subject: '{dataset_dirs['subject']}', self: '{dataset_dirs['self']}'}}",
                             "--data.buckets=[[64, 64]]", "--data.ref_res=32", "--data.batch_size=2", stages])
    stage = cfg.stages[0]
    assert (stage.drop_for("self"), stage.drop_for("subject")) == (0.95, 0.0)
    groups = {k: read_metadata(v, [[64, 64]], 32) for k, v in cfg.data.datasets.items()}
    sampler, objective = BatchSampler(groups, 2, 0.0, seed=0), RoutingObjective()
    seen = set()
    for step in range(16):
        plan = sampler.plan(step, stage.mixture)
        batch = objective.batch(plan, PixelCodec(), cfg, stage, torch.device("cpu"))
        n_ref = sum(r.tokens.shape[1] for r in batch.refs)
        if plan.group == "self":
            assert batch.ref_keep is not None and len(batch.ref_keep) == max(1, round(n_ref * 0.05))
        else:
            assert batch.ref_keep is None
        seen.add(plan.group)
    assert seen == {"self", "subject"}
    with pytest.raises(ValueError, match=r"ref_token_drop: dataset group\(s\) \['nope'\]"):
        load_config(None, [f"--data.datasets={{subject: '{dataset_dirs['subject']}'}}",
                           "--stages=[{name: q, steps: 1, mixture: {subject: 1.0}, ref_token_drop: {nope: 0.5}}]"])
