"""The ``dreamo`` command's bad inputs, one row each: exit code 2, a one-line error with the words that make it
clear, decided before any model is built; and the next good run is unaffected."""

import numpy as np
import pytest
import torch
from PIL import Image

from dreamo_core.generator import cli
from dreamo_core.generator.pipeline import reference_indices


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    Image.fromarray(np.full((64, 64, 3), 200, dtype=np.uint8)).save(d / "ref.png")
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(d / "mask.png")
    (d / "not_an_image.png").write_text("hello")
    (d / "folder").mkdir()
    return d


ROWS = [  # (arguments with {d} for the files folder, words of the error)
    (["--width", "0"], "width must be a multiple of 16 and >= 64, got 0"),
    (["--height", "100"], "height must be a multiple of 16"),
    (["--steps", "0"], "steps must be between 1 and 200"),
    (["--true-cfg", "0.5"], "true_cfg must be >= 1"),
    (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "nonsense"], "--device"),
    (["--ref", "{d}/ref.png", "index=12"], "reference index 12 is out of range; DreamO supports indices 1-9"),
    (["--ref", "{d}/ref.png", "index=2", "--ref", "{d}/ref.png", "index=2"], "reference index 2 is used twice"),
    (["--ref", "{d}/ref.png", "index=x"], "index must be an integer 1..9"),
    (["--ref", "{d}/ref.png", "task=tryon"], "task must be one of ip, id, style"),
    (["--ref", "{d}/ref.png", "colour=red"], "unknown option 'colour=red'"),
    (["--ref", "{d}/ref.png", "strength=-1"], "strength must be a finite number >= 0"),
    (["--ref", "{d}/ref.png", "strength=nan"], "strength must be a finite number"),
    (["--ref", "{d}/ref.png", "start=0.8", "end=0.2"], "need 0 <= start <= end <= 1"),
    (["--ref", "{d}/ref.png", "box=0.5,0,0.8,1"], "must lie inside the image"),
    (["--ref", "{d}/ref.png", "box=1,2"], "box must be X,Y,W,H"),
    (["--ref", "{d}/missing.png"], "file not found"),
    (["--ref", "{d}/not_an_image.png"], "is not a readable image"),
    (["--ref", "{d}/ref.png", "mask={d}/not_an_image.png"], "mask: {d}/not_an_image.png is not a readable image"),
    (["--prompt", "the cat from [ref#3]", "--ref", "{d}/ref.png"], "[ref#3] has no reference with index 3"),
    (["--prompt", "the cat from [ref #1]", "--ref", "{d}/ref.png"], "malformed placeholder"),
    (["--out", "{d}/folder"], "is a folder"),
    (["--lora", "{d}/missing.safetensors"], "file not found"),
    (["--lora", "{d}/ref.png@x"], "expected PATH or PATH@STRENGTH"),
    (["--preset", "v1.1"], "--preset needs --dreamo-dir"),
]


@pytest.mark.parametrize(("argv", "words"), ROWS, ids=[" ".join(r[0])[:40] for r in ROWS])
def test_bad_input_is_named_before_any_model(files, monkeypatch, capsys, argv, words):
    def no_model(*_a, **_k):
        raise AssertionError("a model was built before the bad input was reported")

    monkeypatch.setattr(cli, "load_tiny_generator", no_model)  # this module's name only, for this test
    monkeypatch.setattr(cli, "load_flux_generator", no_model)
    args = [a.replace("{d}", str(files)) for a in argv]
    assert cli.main([*args, "--out", str(files / "o.png")] if "--out" not in args else args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dreamo: error: ") and words.replace("{d}", str(files)) in err, err


def test_good_run_after_the_bad_ones_uses_a_mask_and_the_next_free_index(files, capsys):
    """The row list above ran first (same module); a good run still works: mask=PATH (a 2-D mask) is accepted,
    and a reference without index takes the lowest free one (index=1 is taken, so 2)."""
    out = files / "good.png"
    argv = ["--ref", str(files / "ref.png"), f"mask={files / 'mask.png'}", "--ref", str(files / "ref.png"), "index=1",
            "--width", "64", "--height", "64", "--steps", "1", "--ref-res", "256", "--out", str(out)]
    assert cli.main(argv) == 0
    assert out.is_file() and np.asarray(Image.open(out)).shape == (64, 64, 3)
    refs = [cli.parse_ref(r) for r in ([str(files / "ref.png")], [str(files / "ref.png"), "index=1"])]
    assert reference_indices(refs) == [2, 1]
