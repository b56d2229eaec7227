"""Subject tuning (training.tune_subject) on the tiny model: the self-reference views follow the mask; a short
tune lowers the subject's fixed-noise loss, trains only the new LoRA on top of the frozen base; the exported
LoRA, fused by the generator's loader on top of the base DreamO file, gives the tuned model's forward; the
``dreamo`` command loads it (its image equals the base with the LoRA merged by hand); the before / after samples
are the base's and the tuned model's own; bad inputs exit 2 before any model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from dreamo_core.generator import cli
from dreamo_core.generator.cli import main as dreamo_main
from dreamo_core.generator.flux_forward import ReferenceTokens
from dreamo_core.generator.loading import LoraRequest, load_tiny_generator
from dreamo_core.weights.lora_targets import diffusers_target_names
from training import data
from training.codec import PixelCodec, decode_tokens, encode_tokens
from training.config import ModelConfig
from training.export import export_dreamo
from training.model import build_model
from training.sampling import euler_sample
from training.subject.dataset import BACKGROUNDS, Augment, write_subject_dataset
from training.subject.lora import subject_tune_model
from training.subject.tune import build_parser, main, tune, tune_config, write_prior_dataset

SUBJECT_RGB, SUBJECT_BLUE = (220, 40, 40), (40, 60, 220)
TINY = ["--model.num_layers=1", "--model.num_single_layers=1", "--progress=false", "--data.ref_res=32"]


def subject_files(folder: Path) -> tuple[Path, Path]:
    """An asymmetric subject (red disc, blue bar on its right) on a noisy background, and its exact mask."""
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8))
    mask = Image.new("L", (96, 80), 0)
    for im, red, blue in ((img, SUBJECT_RGB, SUBJECT_BLUE), (mask, 255, 255)):
        d = ImageDraw.Draw(im)
        d.rectangle((20, 10, 69, 59), fill=red)
        d.rectangle((55, 20, 69, 49), fill=blue)
    img.save(folder / "subject.png")
    mask.save(folder / "mask.png")
    return folder / "subject.png", folder / "mask.png"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tune_inputs")
    image, mask = subject_files(root)
    model = build_model(ModelConfig(num_layers=1, num_single_layers=1, lora_rank=4))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a DreamO base whose LoRA is not zero, so merging it matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    base = export_dreamo(model, root / "base_dreamo.safetensors", torch.float32)
    return {"root": root, "image": image, "mask": mask, "base": base}


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_views_follow_the_mask_and_flip(tmp_path: Path, inputs) -> None:
    rows = {}
    for flip in (0.0, 1.0):
        aug = Augment(flip=flip, scale=(1.0, 1.0), backgrounds=("sky",))  # the square box fills the view: no offset
        root = write_subject_dataset(inputs["image"], inputs["mask"], tmp_path / f"f{flip}", 2, 64,
                                     "a [ref#1] toy", "a toy", aug)
        rows[flip] = (load_rgb(root / "targets" / "0000.png"), np.asarray(Image.open(root / "masks" / "0000.png")))
        ref = load_rgb(root / "reference.png")
        assert (ref[5, 5] == 255).all() and tuple(ref[30, 30]) == SUBJECT_RGB  # subject on white
    target, footprint = rows[0.0]
    outside = footprint == 0
    assert outside.sum() > 100 and (target[outside] == BACKGROUNDS["sky"]).all()  # background recoloured
    inside = footprint == 255
    assert (target[inside] != BACKGROUNDS["sky"]).any(axis=-1).mean() > 0.99
    # the blue bar sits on the subject's right; flipped, on its left (the footprint is mirrored exactly)
    blue = (np.abs(target - SUBJECT_BLUE).sum(-1) < 30)
    blue_f = (np.abs(rows[1.0][0] - SUBJECT_BLUE).sum(-1) < 30)
    assert blue[:, 40:].sum() > 0 and blue[:, :24].sum() == 0 and blue_f[:, :24].sum() > 0
    assert np.array_equal(rows[1.0][1], footprint[:, ::-1])


def test_aligned_views_put_the_subject_on_the_grid(tmp_path: Path, inputs) -> None:
    """--align 16: the subject's corner lies on the 16-px token grid in every view (the footprint's first pixel sits
    a fixed offset from it: the mask's soft edge); unaligned, the views' corners differ off the grid."""
    corners = {}
    for align in (1, 16):
        aug = Augment(flip=0.0, scale=(0.5, 0.5), backgrounds=("sky",), align=align)
        root = write_subject_dataset(inputs["image"], inputs["mask"], tmp_path / f"a{align}", 12, 64,
                                     "a [ref#1] toy", "a toy", aug, seed=3)
        corners[align] = []
        for v in range(12):
            ys, xs = np.nonzero(np.asarray(Image.open(root / "masks" / f"{v:04d}.png")))
            corners[align].append((ys.min(), xs.min()))
    offsets = {align: {(int(y) % 16, int(x) % 16) for y, x in c} for align, c in corners.items()}
    assert len(offsets[16]) == 1 and len({tuple(c) for c in corners[16]}) > 1, corners[16]  # moved, on the grid
    assert len(offsets[1]) > 1, corners[1]


def args_for(inputs, out: Path, *extra: str) -> tuple[argparse.Namespace, list[str]]:
    return build_parser().parse_known_args([str(inputs["image"]), "--mask", str(inputs["mask"]), "--out", str(out),
                                            "--base", str(inputs["base"]), "--views", "6", "--size", "64",
                                            *extra, *TINY])


@pytest.fixture(scope="module")
def tuned(inputs):
    a, extra = args_for(inputs, inputs["root"] / "run" / "subject_lora.safetensors", "--steps", "30", "--lr", "3e-3",
                        "--rank", "4", "--sample", "a [ref#1] object on a table", "--prior-steps", "4")
    return tune(a, extra)


def test_tune_lowers_the_subject_loss_and_trains_only_the_new_lora(tuned, inputs) -> None:
    before, after = tuned.evaluation["before"]["subject"], tuned.evaluation["after"]["subject"]
    assert after["diff"] < 0.95 * before["diff"], (before, after)  # same noise and t before and after
    model = tuned.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    base = load_file(str(inputs["base"]))
    assert torch.equal(model.task_embedding.detach().cpu(), base["dreamo_task_embedding.weight"])  # frozen tables
    sd = load_file(str(tuned.lora))
    names = diffusers_target_names(1, 1)
    assert set(sd) == {f"transformer.{n}.lora_{s}.weight" for n in names for s in "AB"}
    assert sd["transformer.single_transformer_blocks.0.proj_out.lora_A.weight"].shape == (4, 32 + 128)
    assert any(v.abs().max() > 0 for k, v in sd.items() if "lora_B" in k)  # it learned something


def own_sample(model, reference: Path, prompt: str, steps: int, seed: int) -> np.ndarray:
    """The model's sample (8-bit) with ``reference`` as ip reference 1 at the tune's 64-px bucket: the trainer's
    Euler sampler on the reference's pixel-codec tokens, decoded here."""
    ref = data.load_rgb(reference)
    ref = data.fit(ref, data.ref_size(ref.shape[0], ref.shape[1], "ip", 32))  # TINY's --data.ref_res=32
    tokens, grid = encode_tokens(PixelCodec(), ref[None])
    with torch.no_grad():
        z = euler_sample(model.cpu(), (4, 4), [ReferenceTokens(tokens, grid, 1)], [prompt], steps=steps, seed=seed)
    return (decode_tokens(PixelCodec(), z, (4, 4))[0].clamp(0, 1) * 255).round().numpy().astype(int)


def test_samples_before_and_after_the_tune(tuned, inputs) -> None:
    work = inputs["root"] / "run" / "subject_lora_tune"
    before, after = load_rgb(work / "samples" / "before_0.png"), load_rgb(work / "samples" / "after_0.png")
    assert before.shape == after.shape == (64, 64, 3) and not np.array_equal(before, after)
    a, extra = args_for(inputs, inputs["root"] / "run" / "subject_lora.safetensors", "--rank", "4")
    base = subject_tune_model(tune_config(a, extra, work, prior=False).model, [LoraRequest(inputs["base"])])
    reference, prompt = work / "subject" / "reference.png", "a [ref#1] object on a table"
    assert np.abs(before - own_sample(base, reference, prompt, 4, 0)).max() <= 1  # the base DreamO, before the tune
    assert np.abs(after - own_sample(tuned.model, reference, prompt, 4, 0)).max() <= 1  # the tuned model


def test_base_plus_subject_lora_fused_by_the_generator_equals_the_tuned_model(tuned, inputs, fixed_forward) -> None:
    gen = load_tiny_generator([LoraRequest(inputs["base"]), LoraRequest(tuned.lora)])
    base_only = load_tiny_generator([LoraRequest(inputs["base"])])
    model = tuned.model.cpu().eval()
    want, got, without = (fixed_forward(t, model, "a photo of a [ref#1] object")
                          for t in (model.transformer, gen.transformer, base_only.transformer))
    assert (got - want).abs().max() < 1e-5
    assert (without - want).abs().max() > 1e-3  # the subject LoRA matters, so the match is not vacuous


def test_dreamo_command_loads_the_subject_lora(tuned, inputs, tmp_path: Path) -> None:
    common = ["--dreamo", str(inputs["base"]), "--ref", str(inputs["image"]), f"mask={inputs['mask']}",
              "--steps", "2", "--width", "64", "--height", "64", "--ref-res", "256", "--dtype", "fp32"]
    assert dreamo_main([*common, "--lora", str(tuned.lora), "--out", str(tmp_path / "with.png")]) == 0
    assert dreamo_main([*common, "--out", str(tmp_path / "without.png")]) == 0
    with_lora = load_rgb(tmp_path / "with.png")
    assert np.abs(with_lora - load_rgb(tmp_path / "without.png")).max() > 0
    # the same generation with the subject LoRA merged by hand, W += B @ A (alpha / r is folded into B)
    a = cli.build_parser().parse_args([*common, "--out", str(tmp_path / "unused.png")])
    gen = load_tiny_generator([LoraRequest(inputs["base"])], None, a.seed)
    lora, modules = load_file(str(tuned.lora)), dict(gen.transformer.named_modules())
    with torch.no_grad():
        for key in [k for k in lora if k.endswith(".lora_A.weight")]:
            name = key.removeprefix("transformer.").removesuffix(".lora_A.weight")
            modules[name].weight += lora[key.replace("lora_A", "lora_B")] @ lora[key]
    image = gen.generate(a.prompt, [cli.parse_ref(items) for items in a.ref], cli.settings_from_args(a, tiny=True))
    assert np.abs(with_lora - (image.numpy() * 255).round().astype(int)).max() <= 1


def test_killed_tune_resumes_to_the_same_lora(inputs, tmp_path: Path) -> None:
    def run(name: str, stop_at: int | None = None):
        a, extra = args_for(inputs, tmp_path / name / "lora.safetensors", "--steps", "4", "--lr", "3e-3", "--rank", "4",
                            "--checkpoint_every=2")
        return tune(a, extra, stop_at)

    straight = run("straight")
    assert run("killed", stop_at=2) is None and not (tmp_path / "killed" / "lora.safetensors").exists()
    resumed = run("killed")  # the same command again: resumes from step 2
    assert len(resumed.history["loss"]) == 2
    a, b = load_file(str(straight.lora)), load_file(str(resumed.lora))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.evaluation == straight.evaluation


def test_prior_rows_are_the_base_models_samples_before_tuning(inputs, tmp_path: Path) -> None:
    prompt = "a [ref#1] object on a beach"
    a, extra = args_for(inputs, tmp_path / "p" / "lora.safetensors", "--steps", "4", "--lr", "1e-2", "--rank", "4",
                        "--prior-images", "2", "--prior-steps", "2", "--prior-prompt", prompt)
    res = tune(a, extra)
    work = tmp_path / "p" / "lora_tune"
    rows = [json.loads(line) for line in (work / "prior" / "metadata.jsonl").read_text().splitlines()]
    assert [r["caption"] for r in rows] == [prompt, prompt]
    assert all(r["references"] == [{"image": "reference.png", "task": "ip", "index": 1}] for r in rows)  # no mask
    assert len(res.history["loss"]) == 4
    cfg = tune_config(a, extra, work, prior=True)
    assert set(cfg.stages[0].mixture) == {"subject", "prior"}
    fresh = subject_tune_model(cfg.model, [LoraRequest(inputs["base"])])  # the base again: the new LoRA is zero
    for model, name in ((fresh, "again"), (res.model.cpu(), "tuned")):
        write_prior_dataset(model, cfg, work / "subject", tmp_path / name, [prompt], 2, 2, 0)
    first = [load_rgb(folder / "targets" / "0000.png") for folder in (work / "prior", tmp_path / "again",
                                                                     tmp_path / "tuned")]
    assert np.array_equal(first[0], first[1])  # generated by the base, before tuning
    assert not np.array_equal(first[0], first[2])  # (the tuned model samples something else)


@pytest.mark.parametrize(("change", "words"), [
    (lambda a: a.__setitem__(0, "missing.png"), "IMAGE missing.png: file not found"),
    (lambda a: a.__setitem__(a.index("--out") + 1, "x.pt"), "name it *.safetensors"),
    (lambda a: a.__setitem__(a.index("--mask") + 1, "SMALL"), "must match the image"),
    (lambda a: a.extend(["--caption", "a toy"]), "must contain [ref#1]"),
    (lambda a: a.extend(["--steps", "0"]), "--steps: must be >= 1"),
    (lambda a: a.extend(["--scale", "0.9,0.2"]), "--scale"),
    (lambda a: a.extend(["--backgrounds", "white,plaid"]), "unknown colour(s) ['plaid']"),
    (lambda a: a.__setitem__(a.index("--base") + 1, "TABLELESS"), "holds the DreamO tables"),
    (lambda a: a.append("stray"), "unknown argument(s) ['stray']"),
    (lambda a: a.append("--model.no_such_key=1"), "unknown key(s) ['no_such_key']"),
], ids=["image", "out", "mask-size", "caption", "steps", "scale", "colour", "base-tables", "stray", "override"])
def test_bad_inputs_exit_2_with_one_line(inputs, tmp_path: Path, capsys, change, words) -> None:
    small = tmp_path / "small.png"
    Image.new("L", (10, 10), 255).save(small)
    tableless = tmp_path / "lora_only.safetensors"
    sd = {k: v for k, v in load_file(str(inputs["base"])).items() if "embedding" not in k}
    from safetensors.torch import save_file

    save_file(sd, str(tableless))
    argv = [str(inputs["image"]), "--mask", str(inputs["mask"]), "--out", str(tmp_path / "o.safetensors"),
            "--base", str(inputs["base"]), "--views", "2", "--size", "64", "--steps", "1", *TINY]
    change(argv)
    argv = [str(small) if x == "SMALL" else str(tableless) if x == "TABLELESS" else x for x in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("training.tune_subject: error: ") and words in err[-1], err
    assert not (tmp_path / "o.safetensors").exists()


def test_regular_dataset_is_mixed_into_the_tune(inputs, tmp_path: Path) -> None:
    from training.data import BatchSampler, read_metadata
    from training.toy.synthetic import make_synthetic_dataset

    regular = tmp_path / "regular"
    make_synthetic_dataset(regular, 6, seed=3, max_refs=1)
    a, extra = args_for(inputs, tmp_path / "r" / "lora.safetensors", "--steps", "6", "--rank", "4",
                        "--regular", str(regular), "--regular-weight", "0.4")
    res = tune(a, extra)
    assert len(res.history["loss"]) == 6
    cfg = tune_config(a, extra, tmp_path / "r" / "lora_tune", prior=False)
    assert cfg.stages[0].mixture == pytest.approx({"subject": 0.6, "regular": 0.4})
    groups = {k: read_metadata(v, cfg.data.buckets, cfg.data.ref_res) for k, v in cfg.data.datasets.items()}
    targets = {r.target for r in groups["regular"]}
    drawn = [BatchSampler(groups, cfg.data.batch_size, 0.0, cfg.seed).plan(s, cfg.stages[0].mixture) for s in range(6)]
    assert any(p.rows[0].target in targets for p in drawn)  # the tune's own step plans draw regular rows
    assert any(p.rows[0].target not in targets for p in drawn)


@pytest.mark.parametrize(("extra", "words"), [
    (["--regular", "NOWHERE"], "--regular NOWHERE: expected a dataset folder with metadata.jsonl"),
    (["--regular-weight", "1.0"], "--regular-weight must be in [0, 1)"),
], ids=["regular-missing", "regular-weight"])
def test_bad_regular_options_exit_2(inputs, tmp_path: Path, capsys, extra, words) -> None:
    argv = [str(inputs["image"]), "--mask", str(inputs["mask"]), "--out", str(tmp_path / "o.safetensors"),
            "--base", str(inputs["base"]), "--views", "2", "--size", "64", "--steps", "1", *TINY, *extra]
    assert main(argv) == 2
    assert words in capsys.readouterr().err.strip().splitlines()[-1]
