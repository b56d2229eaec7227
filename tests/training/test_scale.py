"""The trainer at scale, on the tiny model: bf16 base / fp32 trainables, gradient accumulation, gradient
checkpointing, the text cache, resume checks of stage and data order."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamo_core.generator.flux_forward import ReferenceTokens
from training.batch import make_batch
from training.checkpoint import CheckpointMismatchError, trainable_state
from training.codec import PixelCodec, decode_tokens
from training.config import ModelConfig
from training.data import BatchSampler, read_metadata
from training.loop import train
from training.model import build_model
from training.sampling import euler_sample
from training.text.cache import CachedTextEncoder, caption_key
from training.text.flux import FluxTextEncoder
from training.text.tiny_hashed import TinyTextEncoder
from training.train import main

HELPER = Path(__file__).parents[1] / "generator" / "tiny_flux_folder.py"
T = 12
# bf16 keeps 8 mantissa bits: each stored weight / activation is rounded by up to 2^-9 ~ 0.2 % (relative). The
# tiny model's loss is a mean over ~1e4 squared errors, so these roundings largely average out; measured on this
# config the bf16 run's total loss is within 0.4 % of the fp32 run's at every one of the 6 steps (the route term
# within 1.3 %). 3 % leaves room for other CPUs' bf16 kernels while a wrong dtype path (fp32 trainables cast to
# bf16 and losing the small AdamW updates, or no autocast) fails the dtype test below.
BF16_LOSS_RTOL = 0.03


def run(tiny_config, out: Path, *extra: str):
    return train(tiny_config(out, list(extra)))


def test_bf16_stores_the_base_in_bf16_and_the_trainables_in_fp32(tiny_config) -> None:
    model = build_model(tiny_config(extra=["--model.bf16=true"]).model)
    frozen = {n: p.dtype for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    assert len(frozen) > 20 and set(frozen.values()) == {torch.bfloat16}
    assert {"task_embedding", "idx_embedding", "t5_embedding"} <= set(trainable)
    assert sum(".lora_" in n for n in trainable) == 2 * (8 + 4)  # A and B of 12 targets
    assert set(trainable.values()) == {torch.float32}
    assert {b.dtype for b in model.text_encoder.buffers()} == {torch.bfloat16}  # the frozen tiny "T5" too
    # auto: bf16 for a pretrained model, fp32 for the tiny random one; an explicit value wins
    assert ModelConfig(pretrained="/m").uses_bf16 and not ModelConfig().uses_bf16
    assert not ModelConfig(pretrained="/m", bf16=False).uses_bf16 and ModelConfig(bf16=True).uses_bf16
    fp32 = build_model(tiny_config().model)
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}


def test_bf16_run_tracks_the_fp32_run(tiny_config, tmp_path: Path) -> None:
    fp32 = run(tiny_config, tmp_path / "fp32", "--model.bf16=false")
    bf16 = run(tiny_config, tmp_path / "bf16", "--model.bf16=true")
    a, b = fp32.history["loss"], bf16.history["loss"]
    assert len(a) == len(b) == 6
    for step, (x, y) in enumerate(zip(a, b)):
        assert y == pytest.approx(x, rel=BF16_LOSS_RTOL), (step, x, y)
    assert a != b  # the bf16 path was really taken (not bit-identical to fp32)
    assert {p.dtype for p in bf16.model.parameters() if p.requires_grad} == {torch.float32}  # still fp32 after steps
    assert {p.dtype for p in bf16.model.parameters() if not p.requires_grad} == {torch.bfloat16}


def test_bf16_run_writes_its_samples(tiny_config, tmp_path: Path) -> None:
    # sample_every samples a bf16 base from fp32 noise: outside autocast this is a dtype error mid-training
    cfg = tiny_config(tmp_path / "bf16s", ["--model.bf16=true", "--sample_every=2"])
    model = train(cfg, stop_at=2).model  # as it was when step 2's sample was drawn
    assert sorted(p.name for p in (tmp_path / "bf16s" / "samples").iterdir()) == ["step_00000002.png"]
    png = np.asarray(Image.open(tmp_path / "bf16s" / "samples" / "step_00000002.png").convert("RGB")).astype(int)
    # step 2's batch again ((seed, step) fix it): its first row's references, prompt and target
    groups = {k: read_metadata(v, cfg.data.buckets, cfg.data.ref_res) for k, v in cfg.data.datasets.items()}
    plan = BatchSampler(groups, cfg.data.batch_size, cfg.data.plain_caption_prob, cfg.seed).plan(1, cfg.stages[0].mixture)
    batch = make_batch(plan, PixelCodec(), cfg.data.ref_res, 0.0, torch.device("cpu"))
    refs = [ReferenceTokens(r.tokens[:1], r.grid, r.index) for r in batch.refs]

    def sample_tile(m) -> np.ndarray:  # m's sample, decoded and cut to 8 bits as the run does (under bf16 autocast)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tile = decode_tokens(PixelCodec(), euler_sample(m, batch.grid, refs, batch.captions[:1]), batch.grid)[0]
        return (tile.clamp(0, 1) * 255).byte().numpy().astype(int)

    left = sum(r.grid[1] * 16 for r in refs)  # the reference tiles come first
    assert png.shape == (64, left + 2 * 64, 3)
    assert np.array_equal(png[:, left : left + 64], sample_tile(model))  # the step-2 model's sample
    assert not np.array_equal(png[:, left : left + 64], sample_tile(build_model(cfg.model)))  # not step 0's
    target = np.asarray(Image.open(plan.rows[0].target).convert("RGB"), dtype=np.float64)  # 64 x 64: no crop
    block_mean = target.reshape(8, 8, 8, 8, 3).mean(axis=(1, 3)).repeat(8, 0).repeat(8, 1)  # the codec's 8 x 8 pool
    assert np.abs(png[:, left + 64 :] - block_mean).max() <= 2  # bf16 decode (2^-9 relative) + 8-bit truncation
    assert np.abs(png[:, left : left + 64] - png[:, left + 64 :]).max() > 10  # the sample is not the target


def test_grad_accum_k_at_batch_b_equals_one_step_at_batch_kb(tiny_config, tmp_path: Path) -> None:
    big = run(tiny_config, tmp_path / "b4", "--data.batch_size=4", "--log_every=1")
    acc = run(tiny_config, tmp_path / "b2x2", "--data.batch_size=2", "--grad_accum=2", "--log_every=1")
    acc4 = run(tiny_config, tmp_path / "b1x4", "--data.batch_size=1", "--grad_accum=4")
    small = run(tiny_config, tmp_path / "b2", "--data.batch_size=2")
    want = trainable_state(big.model)
    for result in (acc, acc4):  # same rows, same noise, summed in another order: float tolerance only
        got = trainable_state(result.model)
        for k in want:
            assert torch.allclose(got[k], want[k], atol=1e-6, rtol=1e-5), (k, (got[k] - want[k]).abs().max())
        assert result.history["loss"] == pytest.approx(big.history["loss"], rel=1e-5)
    other = trainable_state(small.model)  # batch 2 without accumulation is a different run: the test can fail
    assert max(float((other[k] - want[k]).abs().max()) for k in want) > 1e-3
    logs = [[json.loads(x) for x in (tmp_path / d / "loss_log.jsonl").read_text().splitlines()] for d in ("b4", "b2x2")]
    assert [r["step"] for r in logs[1]] == list(range(1, 7))  # one line per optimizer step, not per micro-step
    for r, s in zip(*logs):
        assert r["loss"] == pytest.approx(s["loss"], rel=1e-5)


def block_calls(model) -> list[int]:
    calls = [0]
    # a pre-hook: torch's non-reentrant checkpoint stops the recompute early, so a post-forward hook would not fire
    model.transformer.transformer_blocks[0].register_forward_pre_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_gradient_checkpointing_recomputes_blocks_and_gives_the_same_steps(tiny_config, tmp_path: Path) -> None:
    plain = run(tiny_config, tmp_path / "plain", "--stages=[{name: s1, steps: 2, lr: 0.002}]")
    ckpt = run(tiny_config, tmp_path / "ckpt", "--stages=[{name: s1, steps: 2, lr: 0.002}]",
               "--model.gradient_checkpointing=true")
    a, b = trainable_state(plain.model), trainable_state(ckpt.model)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    # it really recomputes: a double block runs twice per step with checkpointing (forward + backward), once without
    counts = []
    g = torch.Generator().manual_seed(0)
    lat, ref = torch.randn(2, 16, 64, generator=g), ReferenceTokens(torch.randn(2, 4, 64, generator=g), (2, 2), 1)
    for model in (plain.model, ckpt.model):
        calls = block_calls(model)
        out, _ = model.train()(lat, (4, 4), [ref], torch.tensor([0.3, 0.8]), torch.full((2,), 3.5),
                               ["a [ref#1] on gray", "a [ref#1]"])
        out.square().mean().backward()
        counts.append(calls[0])
    assert counts == [1, 2]


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.spec_from_file_location("tiny_flux_folder", HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_flux_folder(tmp_path_factory.mktemp("flux"))


def counting(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_text_cache_serves_plain_captions_without_t5(flux_folder: Path, tmp_path: Path) -> None:
    plain, held = "a photo of a cat on the table", "a [ref#1] cat on the [res] table"
    rows = torch.randn(10, 32, generator=torch.Generator().manual_seed(0))
    direct = FluxTextEncoder.from_folder(flux_folder, T)
    want_plain, want_pooled, _ = direct.encode([plain], rows)
    want_held, _, want_slots = direct.encode([held], rows)
    cache = CachedTextEncoder(FluxTextEncoder.from_folder(flux_folder, T), tmp_path / "cache")
    t5 = counting(cache.encoder.t5)
    first = cache.encode([plain, held, plain], rows)
    assert t5[0] == 2 and (cache.misses, cache.hits, cache.encoded_with_placeholders) == (1, 1, 1)
    again = cache.encode([plain], rows)
    assert t5[0] == 2 and cache.hits == 2  # a hit: T5 not called
    assert torch.equal(again[0][0], want_plain[0]) and torch.equal(again[1][0], want_pooled[0])
    torch.testing.assert_close(first[0][1], want_held[0])  # the placeholder caption still ran T5 with the rows
    assert torch.equal(first[2][1], want_slots[0]) and (first[2][[0, 2]] < 0).all()
    # a fresh process reads the disk: no T5 call, identical tensors
    fresh = CachedTextEncoder(FluxTextEncoder.from_folder(flux_folder, T), tmp_path / "cache")
    t5_fresh = counting(fresh.encoder.t5)
    embeds, pooled, _ = fresh.encode([plain], rows)
    assert t5_fresh[0] == 0 and torch.equal(embeds[0], want_plain[0]) and torch.equal(pooled[0], want_pooled[0])
    files = list((tmp_path / "cache").rglob("*.safetensors"))
    assert [f.stem for f in files] == [caption_key(plain)]  # placeholder captions are never cached
    # placeholder rows get their gradient through T5; the cached plain rows contribute none
    rows.requires_grad_(True)
    e, _, _ = fresh.encode([held, plain], rows)
    e.square().sum().backward()
    assert rows.grad[0].abs().sum() > 0 and rows.grad[9].abs().sum() > 0 and rows.grad[1:9].abs().sum() == 0
    # another encoder identity (T5 length 8 instead of 12) never reads these files
    other = CachedTextEncoder(FluxTextEncoder.from_folder(flux_folder, 8), tmp_path / "cache")
    assert other.folder != fresh.folder and other.read(plain) is None


def test_text_cache_refuses_a_file_of_another_caption(tmp_path: Path) -> None:
    enc = CachedTextEncoder(TinyTextEncoder(), tmp_path)
    rows = torch.zeros(10, 32)
    enc.encode(["a red cube"], rows)
    enc.path("a red cube").rename(enc.path("a blue cube"))  # as a hash collision would look
    enc2 = CachedTextEncoder(TinyTextEncoder(), tmp_path)
    calls = counting(enc2.encoder)
    e, _, _ = enc2.encode(["a blue cube"], rows)
    assert calls[0] == 1 and enc2.misses == 1  # re-encoded, not served the red cube
    assert torch.equal(e, TinyTextEncoder().encode(["a blue cube"], rows)[0])


def test_training_with_the_text_cache_equals_training_without(tiny_config, tmp_path: Path) -> None:
    stages = "--stages=[{name: s1, steps: 3, lr: 0.002, mixture: {subject: 1.0}}]"
    a = run(tiny_config, tmp_path / "plain", stages)
    b = run(tiny_config, tmp_path / "cached", stages, f"--model.text_cache={tmp_path / 'cache'}")
    sa, sb = trainable_state(a.model), trainable_state(b.model)
    for k in sa:  # the cached rows were encoded in other batches than they are used in: float tolerance
        assert torch.allclose(sa[k], sb[k], atol=1e-6, rtol=1e-5), (k, (sa[k] - sb[k]).abs().max())
    enc = b.model.text_encoder
    assert isinstance(enc, CachedTextEncoder) and enc.misses > 0 and enc.encoded_with_placeholders > 0


def test_checkpoint_records_stage_and_data_order_and_resume_checks_them(tiny_config, overrides_for, tmp_path: Path,
                                                                       capsys) -> None:
    out = tmp_path / "run"
    run(tiny_config, out, "--log_every=1")
    state = json.loads((out / "checkpoints" / "step_00000006" / "state.json").read_text())
    assert (state["stage"], state["stage_name"]) == (1, "s3")
    order = state["data_order"]
    assert order["seed"] == 0 and order["batch_size"] == 4 and order["grad_accum"] == 1
    assert order["datasets"] == {"self": 4, "subject": 12} and order["next_step"] == 6
    (out / "checkpoints" / "latest").write_text("step_00000004")
    cases = {  # a change that would silently continue another run -> the key it names
        "--seed=1": "data_order.seed: 0 in the checkpoint, 1 from the config",
        "--data.batch_size=2": "data_order.batch_size: 4 in the checkpoint, 2 from the config",
        "--grad_accum=2": "data_order.grad_accum",
        "--stages=[{name: s1, steps: 5, lr: 0.002}, {name: s3, steps: 1, lr: 0.001}]":
            "stage: the checkpoint's step 4 was in stage 1 's3', the config puts it in stage 0 's1'",
    }
    for override, words in cases.items():
        with pytest.raises(CheckpointMismatchError, match="cannot resume") as e:
            run(tiny_config, out, override)
        assert words in str(e.value), (override, str(e.value))
    # the CLI: exit 2, one line
    (tmp_path / "empty.yaml").write_text("{}\n")
    capsys.readouterr()
    assert main([str(tmp_path / "empty.yaml"), *overrides_for(out), "--seed=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("training.train: error: ") and "data_order.seed" in err[0]
    resumed = run(tiny_config, out)  # the unchanged config resumes at step 4
    assert len(resumed.history["loss"]) == 2
