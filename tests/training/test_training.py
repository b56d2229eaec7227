"""End-to-end on the tiny model: loss falls, killed-and-resumed == uninterrupted (parameters and loss log),
loss log and kept checkpoints, export round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamo_core.generator.flux_forward import ReferenceTokens, dreamo_transformer_forward
from dreamo_core.spec import DreamOSpec
from dreamo_core.weights.formats import LoraFormat, load_dreamo_weights
from dreamo_core.weights.lora_diffusers import merge_lora
from training.attention_capture import select_layers
from training.batch import make_batch, step_noise
from training.checkpoint import LATEST, prune_checkpoints
from training.codec import PixelCodec
from training.config import ModelConfig
from training.data import BatchSampler, read_metadata
from training.export import export_dreamo
from training.loop import train
from training.model import build_model, random_transformer
from training.schedule import learning_rate, stage_at
from training.step_losses import compute_losses


def test_loss_on_a_fixed_batch_falls(tiny_config) -> None:
    cfg = tiny_config()
    model = build_model(cfg.model)
    rows = read_metadata(cfg.data.datasets["subject"], cfg.data.buckets, cfg.data.ref_res)
    plan = BatchSampler({"s": [r for r in rows if len(r.refs) == 2]}, 4, 0.0, 0).plan(0, {"s": 1.0})
    batch = make_batch(plan, PixelCodec(), cfg.data.ref_res, 0.0, torch.device("cpu"))
    noise, t = step_noise(cfg, 0, tuple(batch.latents.shape), 0, 1)
    layers = select_layers(model.transformer, cfg.loss.route_layers)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    history = []
    for _ in range(25):
        losses = compute_losses(model, batch, cfg, noise, t, layers)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    assert history[0]["holder"] > 0 and history[0]["route"] > 0
    for k in ("loss", "diff", "route", "holder"):
        assert history[-1][k] < 0.9 * history[0][k], (k, history[0][k], history[-1][k])


def trainable(run: Path) -> dict[str, torch.Tensor]:
    latest = (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run / "checkpoints" / latest / "trainable.safetensors"))


def loss_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "loss_log.jsonl").read_text().splitlines()]


def test_killed_run_resumes_to_the_same_parameters(tiny_config, tmp_path: Path) -> None:
    straight = tiny_config(tmp_path / "straight", ["--log_every=1"])
    train(straight)
    killed = tiny_config(tmp_path / "killed", ["--log_every=1"])
    train(killed, stop_at=3)  # checkpoint at step 2; step 3 is lost as after a kill
    assert (tmp_path / "killed" / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    assert [r["step"] for r in loss_log(tmp_path / "killed")] == [1, 2, 3]
    assert not (tmp_path / "killed" / "dreamo_trained.safetensors").exists()
    train(killed)  # resumes from step 2, runs through stage 2 (with the 95 % reference-token drop)
    a, b = trainable(tmp_path / "straight"), trainable(tmp_path / "killed")
    assert a.keys() == b.keys() and len(a) > 3
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert loss_log(tmp_path / "killed") == loss_log(tmp_path / "straight")  # step 3 logged once, as straight
    start = build_model(straight.model)
    assert not torch.equal(a["idx_embedding"], start.idx_embedding.detach())  # training did change something


def test_loss_log_progress_bar_and_kept_checkpoints(tiny_config, tmp_path: Path, capsys) -> None:
    cfg = tiny_config(tmp_path / "run", ["--log_every=2", "--keep_checkpoints=2", "--progress=true"])
    history = train(cfg).history
    log = loss_log(tmp_path / "run")
    assert [r["step"] for r in log] == [2, 4, 6]
    for r in log:
        _, stage, in_stage = stage_at(cfg, r["step"] - 1)
        assert r["stage"] == stage.name and r["lr"] == pytest.approx(learning_rate(stage, in_stage))
        for k in ("loss", "diff", "route", "holder"):  # one process: the mean over processes is its own loss
            assert r[k] == pytest.approx(history[k][r["step"] - 1], rel=1e-6), (r, k)
    assert {r["stage"] for r in log} == {"s1", "s3"} and log[0]["lr"] != log[-1]["lr"]
    assert f"loss={history['loss'][-1]:.4f}" in capsys.readouterr().err  # tqdm postfix
    ck = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir() if p.name != LATEST) == ["step_00000004", "step_00000006"]
    assert (ck / LATEST).read_text().strip() == "step_00000006"


def test_prune_checkpoints_keeps_the_newest_and_latest(tmp_path: Path) -> None:
    ck = tmp_path / "checkpoints"
    for step in (2, 4, 6, 10, 100):
        (ck / f"step_{step:08d}").mkdir(parents=True)
    (ck / LATEST).write_text("step_00000004")  # e.g. a re-run that went back: latest is never deleted
    assert prune_checkpoints(tmp_path, 0) == [] and prune_checkpoints(tmp_path, None) == []
    assert len(list(ck.glob("step_*"))) == 5
    deleted = prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in deleted) == ["step_00000002", "step_00000006"]
    assert sorted(p.name for p in ck.iterdir()) == [LATEST, "step_00000004", "step_00000010", "step_00000100"]


def test_export_loads_and_merges_like_the_peft_model(tmp_path: Path) -> None:
    cfg = ModelConfig(lora_rank=4, num_layers=2, num_single_layers=2, lora_alpha=8.0)  # scale 2 folded into up
    model = build_model(cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    path = export_dreamo(model, tmp_path / "dreamo_trained.safetensors", dtype=torch.float32)
    sd = load_file(str(path))
    assert sd["double_blocks.1.processor.qkv_lora1.down.weight"].shape == (12, 32)  # 3r x in
    assert sd["double_blocks.1.processor.qkv_lora1.up.weight"].shape == (96, 12)  # 3 out x 3r
    assert sd["single_blocks.0.processor.proj_lora.down.weight"].shape == (4, 160)
    weights = load_dreamo_weights(path, DreamOSpec.of_diffusers_config(model.transformer.config))
    assert weights.lora_format is LoraFormat.XLABS
    assert torch.equal(weights.embeddings.idx, model.idx_embedding.detach())
    assert torch.equal(weights.t5_rows, model.t5_embedding.detach())
    fresh = random_transformer(cfg)
    assert merge_lora(fresh, weights) == 2 * 8 + 2 * 4

    def forward(transformer, tables):
        gen = torch.Generator().manual_seed(0)
        lat = torch.randn(1, 16, 64, generator=gen)
        refs = [ReferenceTokens(torch.randn(1, 4, 64, generator=gen), (2, 2), 1)]
        pe, pooled, _ = model.encode_text(["a [ref#1] on gray"])
        return dreamo_transformer_forward(transformer, lat, (4, 4), refs, torch.tensor([0.6]), torch.tensor([3.5]),
                                          pooled, pe, tables)

    with torch.no_grad():
        want = forward(model.transformer, model.tables)
        got = forward(fresh, weights.embeddings)
        base = forward(random_transformer(cfg), weights.embeddings)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert not torch.allclose(base, want, atol=1e-3)  # the LoRA matters, so the match is not vacuous


@pytest.mark.parametrize("bad", ["single_blocks.0.processor.qkv_lora.down.weight"])
def test_export_is_shape_checked_on_load(tmp_path: Path, bad: str) -> None:
    from safetensors.torch import save_file

    model = build_model(ModelConfig(lora_rank=4, num_layers=1, num_single_layers=1))
    sd = load_file(str(export_dreamo(model, tmp_path / "x.safetensors", torch.float32)))
    sd[bad] = sd[bad][:, :-1].contiguous()
    save_file(sd, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match="qkv_lora"):
        load_dreamo_weights(tmp_path / "broken.safetensors", DreamOSpec.of_diffusers_config(model.transformer.config))
