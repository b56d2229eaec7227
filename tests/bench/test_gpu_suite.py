"""bench.gpu_suite without a GPU: the dry-run plan lists every section and fits the issue's 8 minutes, the CPU mode
at tiny size runs every section that can run here and reports the others as skipped with their reason, the
numbers in its report agree with independent computations, and the time budgets really skip (the report is
still written). ComfyUI is left out here on purpose (its sections: tests/bench/test_gpu_suite_comfy.py, run by
tools/test_nodes.sh); the official variant runs where DREAMO_OFFICIAL_PATH and its interpreter are set."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
from bench.bench_diffusers import GRIDS  # noqa: E402
from bench.gpu_suite.__main__ import main  # noqa: E402
from bench.gpu_suite.report import JSON_NAME, LOG_NAME, MARKDOWN_NAME  # noqa: E402
from bench.gpu_suite.sections import SECTIONS  # noqa: E402
from bench.gpu_suite.settings import FULL, settings_for  # noqa: E402

NO_COMFY = ["--comfyui-path", ""]
OFFICIAL = bool(os.environ.get("DREAMO_OFFICIAL_PATH")) and bool(
    os.environ.get("DREAMO_OFFICIAL_PYTHON") or os.environ.get("DREAMO_OFFICIAL_PYTHONPATH"))


def suite(out: Path, *argv: str) -> dict:
    assert main(["--size", "tiny", "--out", str(out), *NO_COMFY, *argv]) == 0
    return json.loads((out / JSON_NAME).read_text())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gpu_suite_tiny")
    return out, suite(out)


def numbers(rows: list[dict]) -> list[float]:
    return [v for r in rows for v in r.values() if isinstance(v, float)]


def test_dry_run_lists_every_section_and_the_gpu_plan_fits_eight_minutes(capsys, tmp_path):
    # every part available (a ComfyUI tree and an official checkout as the GPU machine has them), so that every
    # part's estimate counts
    (tmp_path / "comfy" / "comfy").mkdir(parents=True)
    (tmp_path / "comfy" / "comfy" / "samplers.py").write_text("")
    (tmp_path / "official" / "dreamo").mkdir(parents=True)
    (tmp_path / "official" / "dreamo" / "dreamo_pipeline.py").write_text("")
    argv = ["--dry-run", "--comfyui-path", str(tmp_path / "comfy"), "--official-path", str(tmp_path / "official"),
            "--official-pythonpath", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    plan = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in plan.splitlines()
            if line.startswith("| ") and "---" not in line][1:]
    by_title = {r[0]: r for r in rows}
    estimates = []
    for key, section in SECTIONS.items():
        row = by_title[section.title]  # every section is in the plan
        estimate, budget = float(row[2]), float(row[3])
        assert 0 < estimate <= budget == FULL.budgets[key], key  # the estimate fits the section's budget
        assert "skipped" not in row[1]
        estimates.append(estimate)
    total = by_title["all"]
    assert float(total[2]) == pytest.approx(sum(estimates), abs=len(estimates))  # rounded per row
    assert sum(FULL.budgets.values()) <= FULL.total_budget <= 8 * 60  # the one run of <= 8 minutes
    assert main(["--dry-run"] + NO_COMFY) == 0  # without ComfyUI the plan says what it skips
    assert "comfyui-sdpa skipped: no ComfyUI tree" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_every_section_has_numbers_or_a_skip_reason(tiny_run):
    out, rep = tiny_run
    assert list(rep["sections"]) == list(SECTIONS)
    for key, sec in rep["sections"].items():
        assert sec["status"] in ("done", "skipped"), (key, sec)
        for name, part in sec["parts"].items():
            if part["status"] == "done":
                values = numbers(part["rows"])
                assert part["rows"] and values and all(math.isfinite(v) for v in values), (key, name)
            else:
                assert part["status"] == "skipped" and part["reason"], (key, name)
    assert rep["sections"]["compile"]["status"] == "skipped"
    assert "no ComfyUI tree" in rep["sections"]["compile"]["reason"]
    md, log = (out / MARKDOWN_NAME).read_text(), (out / LOG_NAME).read_text()
    for section in SECTIONS.values():
        assert f"## {section.title}" in md and f"===== {section.title}" in log  # report, and the console teed


def test_official_section_compares_variants_on_the_same_weights(tiny_run):
    _, rep = tiny_run
    part = rep["sections"]["official"]["parts"]["step"]
    rows = {r["variant"]: r for r in part["rows"]}
    assert part["rounds"] == 2
    assert rows["core"]["diff_vs_core"] == 0.0 and rows["core"]["output_scale"] > 0.1
    if OFFICIAL:
        assert rows["official"]["diff_vs_core"] <= 1e-6  # the official forward under its own diffusers
    else:
        assert "official" not in rows and any(n.startswith("official skipped: no") for n in part["notes"])


def test_overhead_rows_follow_from_their_times(tiny_run):
    _, rep = tiny_run
    rows = rep["sections"]["overhead"]["parts"]["dreamo_core"]["rows"]
    assert [(r["output"], r["refs"]) for r in rows] == [(o, n) for o, n, _ in GRIDS["tiny"]]
    assert rows[0]["floor"] == 1.0 and all(a["floor"] < b["floor"] for a, b in zip(rows, rows[1:]))
    for r in rows:  # one round each: the medians are the single times, so the columns are their quotients
        assert r["ratio"] == pytest.approx(r["dreamo_ms"] / r["plain_ms"], rel=1e-9)
        assert r["overhead_pct"] == pytest.approx((r["dreamo_ms"] / r["same_token_plain_ms"] - 1) * 100, rel=1e-9)


def test_mask_free_strength_equals_the_masked_attention(tiny_run):
    _, rep = tiny_run
    (r,) = rep["sections"]["strength"]["parts"]["dreamo_core"]["rows"]
    assert r["split_vs_mask_max_abs_diff"] <= 1e-5
    blocks = sum(settings_for("tiny").trainer_blocks)  # the tiny forward model: 1 double + 1 single block
    assert r["split_step_ms"] == pytest.approx(r["strength_1_ms"] + blocks * (r["attn_split_ms"] - r["attn_unmasked_ms"]))


def test_trainer_plan_counts_the_model_the_step_trained(tiny_run):
    _, rep = tiny_run
    (r,) = rep["sections"]["trainer"]["parts"]["trainer"]["rows"]
    assert r["frozen_params"] == r["plan_frozen_params"] > 0  # meta-device plan = the model built and stepped
    assert r["plan_weights_gib"] == pytest.approx(2 * r["frozen_params"] / 2**30)  # bf16 frozen base
    assert r["checkpointing"] and r["batch"] == 1 and r["refs"] == 2 and r["step_s"] > 0
    assert r["peak_gib"] is None  # measured on CUDA only


def test_total_budget_skips_sections_and_still_writes_the_table(tmp_path):
    rep = suite(tmp_path, "--total-budget", "1")
    assert {s["status"] for s in rep["sections"].values()} == {"skipped"}
    assert all(s["reason"].startswith("time budget") or "no ComfyUI tree" in s["reason"]
               for s in rep["sections"].values())
    assert "Status: **skipped**" in (tmp_path / MARKDOWN_NAME).read_text()


def test_a_section_budget_cuts_that_section(tmp_path):
    rep = suite(tmp_path, "--sections", "overhead", "--budget", "overhead=0.001")
    sec = rep["sections"]["overhead"]
    assert list(rep["sections"]) == ["overhead"] and sec["status"] == "partial"
    assert sec["parts"]["dreamo_core"]["status"] == "skipped"
    assert sec["parts"]["dreamo_core"]["reason"].startswith("time budget")


@pytest.mark.parametrize(("argv", "names"), [(["--sections", "official,fast"], "--sections"),
                                             (["--budget", "official"], "--budget"),
                                             (["--budget", "nowhere=3"], "--budget")])
def test_bad_arguments_exit_naming_the_argument(argv, names):
    with pytest.raises(SystemExit) as e:
        main(["--dry-run", *argv])
    assert names in str(e.value)
