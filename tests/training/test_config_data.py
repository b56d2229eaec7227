"""Config strictness and dataset validation / bucketing / sampling."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from training.config import TrainConfig, check_paths, load_config
from training.data import BatchSampler, DatasetError, nearest_bucket, read_metadata


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


def test_floats_written_without_a_dot_are_floats() -> None:
    """YAML 1.1 reads ``1e-5`` as a string; a float key takes it as the number (and still refuses words)."""
    cfg = load_config("training/configs/tiny.yaml", ["--stages.0.lr=1e-5", "--loss.route=2E-1"])
    assert cfg.stages[0].lr == 1e-5 and cfg.loss.route == 0.2
    with pytest.raises(ValueError, match=r"stages\[0\].lr: expected float, got str '1e-5x'"):
        load_config("training/configs/tiny.yaml", ["--stages.0.lr=1e-5x"])


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


def corrupt_copy(src: Path, dst: Path) -> Path:
    """A copy of dataset ``src`` whose rows 1-4 each name one undecodable or mis-sized image."""
    from PIL import Image

    shutil.copytree(src, dst)
    rows = [json.loads(line) for line in (dst / "metadata.jsonl").read_text().splitlines()]
    target = dst / rows[0]["target"]
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])  # truncated PNG: the header still reads
    (dst / rows[1]["references"][0]["image"]).write_text("not an image\n")  # a text file named .png
    (dst / rows[2]["references"][0]["mask"]).write_text("not a mask\n")
    Image.new("L", (32, 48)).save(dst / rows[3]["references"][0]["mask"])  # the targets are 64x64
    return dst


def test_row_check_decodes_every_image_and_checks_mask_sizes(dataset_dirs: dict[str, Path], tmp_path: Path,
                                                             caplog) -> None:
    folder = corrupt_copy(dataset_dirs["subject"], tmp_path / "ds")
    with pytest.raises(DatasetError, match=r"metadata.jsonl:1: bad row: target 'targets/00000.png' does not decode"
                                           r".*truncated.*3 more bad row"):
        read_metadata(folder, [[64, 64]], 32, "stop")
    with caplog.at_level(logging.WARNING, logger="DreamO"):
        rows = read_metadata(folder, [[64, 64]], 32, "skip")
    assert len(rows) == 12 - 4 and all(not r.source.endswith((":1", ":2", ":3", ":4")) for r in rows)
    lines = {r.getMessage().split(": skipping bad row: ")[0].rsplit(":", 1)[1]: r.getMessage()
             for r in caplog.records if "skipping bad row" in r.getMessage()}
    assert sorted(lines) == ["1", "2", "3", "4"]
    assert "references[0] image 'refs/00001_1.png' does not decode" in lines["2"]
    assert "references[0] mask 'masks/00002_1.png' does not decode" in lines["3"]
    assert "references[0] mask 'masks/00003_1.png' is 32x48 but the target is 64x64" in lines["4"]
    assert "skipped 4 of 12 rows" in caplog.text


def test_no_usable_rows_is_a_dataset_error(dataset_dirs: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    shutil.copytree(dataset_dirs["self"], folder)
    rows = (folder / "metadata.jsonl").read_text().splitlines()
    write_rows(folder, [json.dumps(dict(json.loads(r), target="targets/nope.png")) for r in rows])
    with pytest.raises(DatasetError, match=r"no usable rows in metadata.jsonl: all 4 row\(s\) are bad"):
        read_metadata(folder, [[64, 64]], 32, "skip")
    (folder / "metadata.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no usable rows in metadata.jsonl: the file has no rows"):
        read_metadata(folder, [[64, 64]], 32, "stop")
    assert len(read_metadata(dataset_dirs["self"], [[64, 64]], 32, "stop")) == 4  # the good set still reads


def test_config_errors_are_one_line_and_name_the_file_or_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  lora_rank: 4\n bad_indent: [1, 2\n")
    with pytest.raises(ValueError) as info:
        load_config(bad)
    assert str(bad) in str(info.value) and "not valid YAML: line 3" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"override '--model.lora_rank=\[1,': the value is not valid YAML"):
        load_config(None, ["--model.lora_rank=[1,"])
    with pytest.raises(ValueError, match=r"override '--stages.7.steps=3': no such key path \(IndexError"):
        load_config(None, ["--stages=[{name: a}]", "--stages.7.steps=3"])
    with pytest.raises(ValueError, match=r"override '--seed.x=3': no such key path"):
        load_config(None, ["--seed=1", "--seed.x=3"])
    with pytest.raises(ValueError, match="config keep_checkpoints: must be >= 0, got -1"):
        load_config(None, ["--keep_checkpoints=-1"])
    with pytest.raises(ValueError, match="config checkpoint_every: must be >= 1, got 0"):
        load_config(None, ["--checkpoint_every=0"])
    assert load_config(None, ["--keep_checkpoints=null"]).keep_checkpoints is None


def test_check_paths_names_the_key_and_folder(dataset_dirs: dict[str, Path], tmp_path: Path) -> None:
    data = f"--data.datasets={{subject: '{dataset_dirs['subject']}'}}"
    check_paths(load_config(None, [data]))  # tiny model, existing dataset: nothing to complain about
    nowhere = tmp_path / "FLUX.1-dev"
    cases = {
        "model.pretrained": [f"--model.pretrained={nowhere / 'transformer'}", f"--model.text_encoder={tmp_path}"],
        "model.text_encoder": [f"--model.text_encoder={nowhere}"],
        "model.vae_path": ["--model.codec=vae", f"--model.vae_path={nowhere / 'vae'}"],
        "data.datasets.x": [f"--data.datasets={{x: '{nowhere}'}}"],
    }
    for key, extra in cases.items():
        with pytest.raises(FileNotFoundError) as info:
            check_paths(load_config(None, [data, *extra]))
        assert f"config {key}: {nowhere}" in str(info.value) and "is not a folder" in str(info.value), key
    with pytest.raises(FileNotFoundError, match=r"config model.text_encoder: .* lacks \['text_encoder', 'tokenizer'"):
        check_paths(load_config(None, [data, f"--model.text_encoder={tmp_path}"]))
    with pytest.raises(ValueError, match="config data.datasets: no dataset given"):
        check_paths(load_config(None, []))
