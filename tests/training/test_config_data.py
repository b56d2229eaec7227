"""Config strictness and dataset validation / bucketing / sampling."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from training.config import TrainConfig, load_config
from training.data import BatchSampler, nearest_bucket, read_metadata


def test_config_rejects_unknown_and_wrong_types(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  lora_rnak: 4\n")
    with pytest.raises(ValueError, match=r"model: unknown key\(s\) \['lora_rnak'\]"):
        load_config(bad)
    with pytest.raises(ValueError, match="model.lora_rank: expected int"):
        load_config(None, ["--model.lora_rank=abc"])
    with pytest.raises(ValueError, match="unknown key"):
        load_config(None, ["--stages=[{name: a, stepz: 3}]"])
    with pytest.raises(ValueError, match="expected bool"):
        load_config(None, ["--progress=1"])
    with pytest.raises(ValueError, match="mixture"):
        load_config(None, ["--stages=[{mixture: {nope: 1.0}}]"])
    with pytest.raises(ValueError, match="--key=value"):
        load_config(None, ["model.lora_rank=4"])


def test_config_overrides_nested_and_list_items() -> None:
    cfg = load_config("training/configs/tiny.yaml", ["--model.lora_rank=16", "--stages.2.ref_token_drop=0.9", "--loss.route=0"])
    assert isinstance(cfg, TrainConfig)
    assert cfg.model.lora_rank == 16 and cfg.stages[2].ref_token_drop == 0.9 and cfg.loss.route == 0.0
    assert [s.name for s in cfg.stages] == ["subject", "all", "quality"]
    assert load_config("training/configs/flux_dev.yaml").model.lora_rank == 128


def write_rows(folder: Path, rows: list[str]) -> None:
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")


def test_bad_rows_reported_with_file_line_and_reason(dataset_dirs: dict[str, Path], tmp_path: Path, caplog) -> None:
    src = dataset_dirs["subject"]
    good = (src / "metadata.jsonl").read_text().splitlines()[0]
    row = json.loads(good)
    folder = tmp_path / "ds"
    shutil.copytree(src, folder)
    missing = dict(row, target="targets/nope.png")
    mismatch = dict(row, caption="a [ref#2] on gray")
    dup = dict(row, references=[row["references"][0], row["references"][0]], caption="a [ref#1]")
    write_rows(folder, [good, "{not json", json.dumps(missing), json.dumps(mismatch), json.dumps(dup)])
    with pytest.raises(ValueError, match=r"metadata.jsonl:2: bad row"):
        read_metadata(folder, [[64, 64]], 32, "stop")
    with caplog.at_level(logging.WARNING, logger="DreamO"):
        rows = read_metadata(folder, [[64, 64]], 32, "skip")
    assert len(rows) == 1
    text = caplog.text
    assert "metadata.jsonl:3" in text and "target file not found" in text
    assert "metadata.jsonl:4" in text and "do not match the reference indices" in text
    assert "metadata.jsonl:5" in text and "unique int" in text


def test_buckets_and_deterministic_sharded_sampling(dataset_dirs: dict[str, Path]) -> None:
    assert nearest_bucket(100, 200, [[64, 64], [64, 128], [128, 64]]) == (64, 128)
    rows = read_metadata(dataset_dirs["subject"], [[64, 64]], 32)
    sampler = BatchSampler({"subject": rows}, 4, 0.5, seed=3)
    full = sampler.plan(7, {"subject": 1.0})
    assert len({r.bucket for r in full.rows}) == 1  # one bucket per batch: 1-ref and 2-ref rows never mix
    again = sampler.plan(7, {"subject": 1.0})
    assert [r.source for r in again.rows] == [r.source for r in full.rows]
    shards = [sampler.plan(7, {"subject": 1.0}, rank, 2) for rank in (0, 1)]
    assert [r.source for r in shards[0].rows] == [r.source for r in full.rows[0::2]]
    assert [r.source for r in shards[1].rows] == [r.source for r in full.rows[1::2]]
    with pytest.raises(ValueError, match="divisible"):
        sampler.plan(0, {"subject": 1.0}, 0, 3)
