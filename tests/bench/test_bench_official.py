"""bench_official: every variant computes the same step on the same weights and tokens, its subprocesses load
exactly the seeded model, its FLUX.1-dev sizes are the spec's, and its peak-memory and stand-in helpers do what
they say. The official and ComfyUI variants run where their checkout / interpreter / tree is given
(DREAMO_OFFICIAL_PATH + DREAMO_OFFICIAL_PYTHON, COMFYUI_PATH), else they are skipped."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
from bench import bench_official as B  # noqa: E402
from bench.comfy_harness import stand_in_for_absent  # noqa: E402
from bench.common import SIZES, peak_rss_gib, reset_peak_rss  # noqa: E402
from bench.seeded_weights import materialize_seeded  # noqa: E402
from dreamo_core.spec import FLUX_DEV  # noqa: E402

TINY = ["--size", "tiny", "--out", "64", "--ref-res", "32", "--refs", "2", "--text-tokens", "8", "--repeat", "1"]


def run_children(tmp_path: Path, variants: list[str], extra: list[str] | None = None) -> dict[str, torch.Tensor]:
    argv = [*TINY, *(extra or [])]
    a = B.arguments().parse_args(argv)
    B.child(a, argv, "weights", tmp_path)
    return {v: B.child(a, argv, v, tmp_path)["out"] for v in variants}


def in_process_core(seed: int) -> torch.Tensor:
    """The core step on a model built here from its seed (no weights file), with the bench's seeded tokens."""
    from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward
    from dreamo_core.generator.tiny import flux_transformer

    a = B.arguments().parse_args(TINY)
    x = B.inputs(a)
    model = materialize_seeded(flux_transformer(0, "meta", None, **SIZES["tiny"]), seed, "cpu", torch.float32)
    refs = [ReferenceTokens(r, x["rgrid"], k + 1) for k, r in enumerate(x["refs"])]
    with torch.no_grad():
        return dreamo_transformer_forward(model, x["latents"], x["grid"], refs, torch.full((1,), B.SIGMA),
                                          torch.full((1,), B.GUIDANCE), x["pooled"], x["embeds"], x["tables"])


def test_core_subprocess_equals_the_seeded_model_in_process(tmp_path):
    out = run_children(tmp_path, ["core"])["core"]
    assert out.shape == (1, 16, 64) and torch.isfinite(out).all()
    # weights file -> meta model -> strict load: the same model (to float32 rounding: the loaded tensors sit
    # at other addresses, so BLAS may take other kernel paths)
    assert (out - in_process_core(0)).abs().max() <= 1e-6
    assert (out - in_process_core(1)).abs().max() > 1e-3  # the check can fail: other weights, other output
    # the weights made in the subprocess on its device (no file, as the GPU suite runs): the same model again
    on_device = run_children(tmp_path, ["core"], ["--weights-on-device"])["core"]
    assert (on_device - out).abs().max() <= 1e-6


def comfy_tree() -> str:
    return os.environ.get("COMFYUI_PATH", "")


@pytest.mark.skipif(not Path(comfy_tree(), "comfy", "samplers.py").is_file(), reason="COMFYUI_PATH is not set")
def test_comfyui_nodes_compute_the_core_step(tmp_path):
    """ComfyUI's FLUX from the converted diffusers weights + Load DreamO LoRA + Apply DreamO Conditioning, two
    references, float32: the same velocity as dreamo_core, with either ComfyUI attention."""
    outs = run_children(tmp_path, ["core", "comfyui", "comfyui-sdpa"], ["--comfyui-path", comfy_tree()])
    scale = outs["core"].abs().max().item()
    assert scale > 0.1
    for v in ("comfyui", "comfyui-sdpa"):
        assert (outs[v] - outs["core"]).abs().max().item() <= 1e-5 * max(1.0, scale), v


OFFICIAL = (os.environ.get("DREAMO_OFFICIAL_PATH", ""), os.environ.get("DREAMO_OFFICIAL_PYTHON", ""),
            os.environ.get("DREAMO_OFFICIAL_PYTHONPATH", ""))


@pytest.mark.skipif(not (Path(OFFICIAL[0], "dreamo", "dreamo_pipeline.py").is_file()
                         and (Path(OFFICIAL[1]).is_file() or OFFICIAL[2])),
                    reason="DREAMO_OFFICIAL_PATH and DREAMO_OFFICIAL_PYTHON or DREAMO_OFFICIAL_PYTHONPATH are not set")
@pytest.mark.parametrize("weights", [[], ["--weights-on-device"]], ids=["file", "on-device"])
def test_official_forward_under_its_interpreter_equals_core(tmp_path, weights):
    outs = run_children(tmp_path, ["official", "core"],
                        ["--official-path", OFFICIAL[0], "--official-python", OFFICIAL[1] or sys.executable,
                         "--official-pythonpath", OFFICIAL[2], *weights])
    assert (outs["official"] - outs["core"]).abs().max().item() <= 1e-6


@pytest.mark.parametrize(("argv", "names"), [
    (["--variants", "core,fast"], "--variants"),
    (["--variants", "official", "--official-path", "/nonexistent"], "--official-path"),
    (["--variants", "comfyui", "--comfyui-path", "/nonexistent"], "--comfyui-path"),
    (["--variants", "core", "--repeat", "0"], "--repeat"),
])
def test_bad_arguments_exit_naming_the_argument(argv, names):
    with pytest.raises(SystemExit) as e:
        B.main([*TINY, *argv])
    assert names in str(e.value)


def test_stand_in_only_for_an_absent_library():
    """The harness's stand-ins, as the official variant uses them for torchvision.utils and cv2."""
    name = "dreamo_bench_absent_lib"
    finder = stand_in_for_absent((name, "json"))
    try:
        utils = importlib.import_module(f"{name}.utils")
        assert sys.modules[name].utils is utils
        with pytest.raises(RuntimeError, match=f"{name}.utils.make_grid is a stand-in: {name} is not installed"):
            utils.make_grid()
        assert importlib.import_module("json").dumps([1]) == "[1]" and "json" not in finder.libraries  # present: left alone
        assert importlib.util.find_spec(name) is not None  # libraries probing it see a module with a spec
    finally:
        finder.libraries.discard(name)
        for k in (name, f"{name}.utils"):
            sys.modules.pop(k, None)
    assert importlib.util.find_spec(name) is None  # the stand-in is gone again


def test_flux_dev_sizes_are_the_spec():
    """``width`` and ``full`` are FLUX.1-dev (FLUX_DEV.diffusers_config) with 2 + 2 blocks and all blocks, in the
    weights (diffusers) and in what the comfyui variants expect ComfyUI to detect."""
    assert {**SIZES["full"], "guidance_embeds": True} == FLUX_DEV.diffusers_config()
    assert {**SIZES["width"], "guidance_embeds": True} == FLUX_DEV.diffusers_config(num_layers=2, num_single_layers=2)
    assert B.size_spec("full") == FLUX_DEV
    assert B.size_spec("width").comfy_flux_params() == FLUX_DEV.comfy_flux_params(depth=2, depth_single_blocks=2)
    assert B.size_spec("tiny").comfy_flux_params() == dict(hidden_size=32, num_heads=2, depth=1, depth_single_blocks=1,
                                                           context_in_dim=32, vec_in_dim=32, axes_dim=[4, 6, 6])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_peak_rss_counts_from_the_reset():
    big = torch.ones(64 * 2**20)  # 256 MiB, touched
    with_big = peak_rss_gib()
    del big
    assert reset_peak_rss()
    after_reset = peak_rss_gib()
    assert with_big - after_reset > 0.2  # the freed 256 MiB no longer count
    again = torch.ones(32 * 2**20)  # 128 MiB
    grown = peak_rss_gib() - after_reset
    del again
    assert 0.1 < grown < 0.2
