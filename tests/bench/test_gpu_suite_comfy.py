"""bench.gpu_suite's ComfyUI parts at tiny size on the CPU (run by tools/test_nodes.sh on each bundled tree):
our nodes compute the core step (section 1), their overhead rows are measured (section 2), and torch.compile
through ComfyUI's TorchCompileModel node sees no graph break and no recompile from DreamO (section 4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
from bench.bench_diffusers import GRIDS  # noqa: E402
from bench.gpu_suite.__main__ import main  # noqa: E402
from bench.gpu_suite.report import JSON_NAME  # noqa: E402

COMFY = os.environ.get("COMFYUI_PATH", "")
pytestmark = pytest.mark.skipif(not Path(COMFY, "comfy", "samplers.py").is_file(), reason="COMFYUI_PATH is not set")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_suite_comfy")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("COMFYUI_PATH")  # the tree reaches every section through --comfyui-path alone
        assert main(["--size", "tiny", "--out", str(out), "--sections", "official,overhead,compile", "--rounds", "1",
                     "--comfyui-path", COMFY]) == 0
    rep = json.loads((out / JSON_NAME).read_text())
    assert {s["status"] for s in rep["sections"].values()} == {"done"}, rep
    return rep


def test_comfyui_nodes_compute_the_core_step(report):
    rows = {r["variant"]: r for r in report["sections"]["official"]["parts"]["step"]["rows"]}
    comfy = rows["comfyui-sdpa"]
    assert "ComfyUI" in comfy["stack"] and "attention_pytorch" in comfy["stack"]
    assert comfy["diff_vs_core"] <= 1e-5 * max(1.0, rows["core"]["output_scale"])  # fp32, the same seeded weights
    assert rows["core"]["output_scale"] > 0.1


def test_comfyui_overhead_rows_are_measured(report):
    part = report["sections"]["overhead"]["parts"]["ComfyUI nodes"]
    assert part["status"] == "done"
    assert [(r["output"], r["refs"]) for r in part["rows"]] == [(o, n) for o, n, _ in GRIDS["tiny"]]
    assert all(r["plain_ms"] > 0 and r["dreamo_ms"] > 0 for r in part["rows"])


def test_compile_sees_no_graph_break_or_recompile_from_dreamo(report):
    plain, dreamo = report["sections"]["compile"]["parts"]["ComfyUI nodes"]["rows"]
    assert plain["model"] == "plain FLUX" and dreamo["model"].startswith("DreamO")
    assert dreamo["graph_breaks"] <= plain["graph_breaks"] and dreamo["graphs"] <= plain["graphs"]
    assert plain["recompiles"] == 0 and dreamo["recompiles"] == 0  # four steps, other sigmas and noises
