"""The preference stage on the tiny model (pairs from conftest's pair world): the first step is exactly log 2 with
accuracy 0.5; one step's two model calls see the pair with the same ε, t and conditioning, the first without
gradients and with the new LoRA off (equal to the model with that LoRA removed); Flow-DPO on a fixed batch raises
the margin; the SFT control trains flow matching on the preferred targets only; grad accumulation equals one batch;
a killed run resumes bit for bit; the loss log and progress line; the exported LoRA, fused by the generator's
loader on the base file, gives the trained model's forward, and ``dreamo --lora`` loads it; the command's exit
codes."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from dreamo_core.generator import cli
from dreamo_core.generator.cli import main as dreamo_main
from dreamo_core.generator.loading import LoraRequest, load_tiny_generator
from dreamo_core.routing.losses import flow_matching_loss, noisy_latents
from dreamo_core.weights.lora_targets import diffusers_target_names
from training.batch import step_noise
from training.checkpoint import CheckpointMismatchError, trainable_state
from training.codec import PixelCodec
from training.config import ModelConfig
from training.data import BatchSampler
from training.export import export_dreamo
from training.model import build_model
from training.preference.command import main
from training.preference.config import load_preference_config
from training.preference.objective import PreferenceObjective, preference_model
from training.preference.stage import train_preference

CPU = torch.device("cpu")


def randomize_lora_b(model: nn.Module, seed: int, scale: float = 0.05) -> nn.Module:
    """Give the LoRA's B matrices random values (a fresh LoRA is exactly zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


@pytest.fixture(scope="module")
def base_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DreamO file (trainer export) for the tiny 1 + 1-block model whose LoRA is not zero."""
    model = randomize_lora_b(build_model(ModelConfig(num_layers=1, num_single_layers=1, lora_rank=4)), 5)
    return export_dreamo(model, tmp_path_factory.mktemp("pref_base") / "base_dreamo.safetensors", torch.float32)


def step_inputs(cfg, objective: PreferenceObjective, step: int = 0):
    """Step ``step``'s pair batch (4 pairs) and its noise and t, as the loop draws them on one process."""
    rows = objective.rows(cfg.data.datasets["pairs"], cfg)
    plan = BatchSampler({"pairs": rows}, cfg.data.batch_size, cfg.data.plain_caption_prob, cfg.seed).plan(
        step, {"pairs": 1.0})
    batch = objective.batch(plan, PixelCodec(), cfg, cfg.stages[0], CPU)
    noise, t = step_noise(cfg, step, tuple(batch.latents.shape), 0, 1)
    return batch, noise, t


class Spy(nn.Module):
    """Records each call's inputs, whether gradients were on, whether every LoRA layer was off, and the output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.module, self.calls = model, []

    def forward(self, **kwargs):
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in self.module.modules() if isinstance(m, BaseTunerLayer)]
        out = self.module(**kwargs)
        self.calls.append({"in": kwargs, "grad": torch.is_grad_enabled(), "off": all(m.disable_adapters for m in layers),
                           "out": out[0].detach()})
        return out


def test_first_step_is_log_2_with_reward_accuracy_one_half(pair_overrides_for, tmp_path: Path) -> None:
    result = train_preference(load_preference_config(None, pair_overrides_for(tmp_path / "run")), stop_at=1)
    h = result.history
    assert h["margin"] == [0.0] and h["accuracy"] == [0.5]  # the new LoRA is zero: θ is the reference, exactly
    assert h["loss"][0] - 0.5 * h["anchor"][0] == pytest.approx(math.log(2), abs=1e-6)  # anchor weight 0.5
    assert h["anchor"][0] > 0.1 and result.lora is None  # stopped early: nothing exported


def test_one_step_shares_noise_t_and_conditioning_and_the_reference_pass_is_the_base(pair_overrides_for,
                                                                                   tmp_path: Path) -> None:
    cfg = load_preference_config(None, pair_overrides_for(tmp_path / "run"))
    objective = PreferenceObjective(cfg.preference)
    model = randomize_lora_b(preference_model(cfg), 7)
    batch, noise, t = step_inputs(cfg, objective)
    spy = Spy(model)
    objective.losses(spy, batch, cfg, noise, t, frozenset())
    ref, pol = spy.calls
    assert (ref["grad"], ref["off"]) == (False, True) and (pol["grad"], pol["off"]) == (True, False)
    for key in ("latents", "sigma", "guidance"):
        assert torch.equal(ref["in"][key], pol["in"][key]), key
    b = batch.latents.shape[0]
    z, sigma = pol["in"]["latents"], pol["in"]["sigma"]
    assert z.shape[0] == 2 * b and torch.equal(sigma[:b], t) and torch.equal(sigma[b:], t)
    s = t[:, None, None]
    eps_w = (z[:b] - (1 - s) * batch.latents) / s  # ε recovered from each member of the pair
    eps_l = (z[b:] - (1 - s) * batch.rejected) / s
    assert torch.allclose(eps_w, noise, atol=1e-5) and torch.allclose(eps_l, noise, atol=1e-5)
    assert not torch.allclose(batch.latents, batch.rejected, atol=1e-3)  # two different targets
    captions = pol["in"]["captions"]
    assert captions[:b] == captions[b:] == batch.captions
    for r in pol["in"]["refs"]:
        assert torch.equal(r.tokens[:b], r.tokens[b:])
    # the reference pass is the network without the new LoRA: a copy with every lora_B zeroed, LoRA on
    plain = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in plain.named_parameters():
            if "lora_B" in name:
                p.zero_()
        want = plain(**ref["in"])[0]
    assert torch.equal(ref["out"], want)
    assert (pol["out"] - want).abs().max() > 1e-3  # the LoRA is on in the trained pass
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)  # untouched by the switch


def test_dpo_on_a_fixed_batch_raises_the_margin(pair_overrides_for, tmp_path: Path) -> None:
    cfg = load_preference_config(None, pair_overrides_for(tmp_path / "run") + ["--preference.anchor=0.0"])
    objective = PreferenceObjective(cfg.preference)
    model = preference_model(cfg)
    batch, noise, t = step_inputs(cfg, objective)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    history = []
    for _ in range(12):
        out = objective.losses(model, batch, cfg, noise, t, frozenset())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in out.items()})
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert history[-1]["margin"] > 0.5 and history[-1]["accuracy"] == 1.0
    assert history[-1]["loss"] < 0.8 * math.log(2)


def test_sft_control_is_flow_matching_on_the_preferred_only(pair_overrides_for, tmp_path: Path) -> None:
    cfg = load_preference_config(None, pair_overrides_for(tmp_path / "run") + ["--preference.mode=sft"])
    objective = PreferenceObjective(cfg.preference)
    model = randomize_lora_b(preference_model(cfg), 8)
    batch, noise, t = step_inputs(cfg, objective)
    spy = Spy(model)
    got = objective.losses(spy, batch, cfg, noise, t, frozenset())
    assert list(got) == ["loss"] and len(spy.calls) == 1 and spy.calls[0]["in"]["latents"].shape[0] == 4
    with torch.no_grad():  # flow matching by hand on the preferred targets
        pred, _ = model(noisy_latents(batch.latents, noise, t), batch.grid, batch.refs, t, torch.full_like(t, 3.5),
                        batch.captions)
    assert got["loss"].item() == pytest.approx(flow_matching_loss(pred, batch.latents, noise).item(), rel=1e-6)
    run = train_preference(load_preference_config(None, pair_overrides_for(tmp_path / "sft") + [
        "--preference.mode=sft"]))
    log = [json.loads(line) for line in (tmp_path / "sft" / "loss_log.jsonl").read_text().splitlines()]
    assert set(log[0]) == {"step", "stage", "lr", "loss"} and len(run.history["loss"]) == 4
    assert load_file(str(run.lora)).keys()  # exported like the Flow-DPO run


def test_grad_accumulation_equals_one_batch(pair_overrides_for, tmp_path: Path) -> None:
    one = train_preference(load_preference_config(None, pair_overrides_for(tmp_path / "b4")), stop_at=2)
    acc = train_preference(load_preference_config(None, pair_overrides_for(tmp_path / "b2x2") + [
        "--data.batch_size=2", "--grad_accum=2"]), stop_at=2)
    a, b = trainable_state(one.model), trainable_state(acc.model)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    for k in ("loss", "margin", "accuracy", "anchor"):
        assert acc.history[k] == pytest.approx(one.history[k], rel=1e-5, abs=1e-6), k
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in a.items() if "lora_B" in k)  # it trained


def test_killed_run_resumes_bit_for_bit_and_refuses_another_objective(pair_overrides_for, tmp_path: Path) -> None:
    straight = train_preference(load_preference_config(None, pair_overrides_for(tmp_path / "straight")))
    killed = load_preference_config(None, pair_overrides_for(tmp_path / "killed"))
    assert train_preference(killed, stop_at=3).lora is None  # checkpoint at step 2; step 3 is lost
    with pytest.raises(CheckpointMismatchError, match="objective"):
        train_preference(load_preference_config(None, pair_overrides_for(tmp_path / "killed") + [
            "--preference.mode=sft"]))
    resumed = train_preference(killed)
    assert len(resumed.history["loss"]) == 2  # steps 3 and 4
    a, b = load_file(str(straight.lora)), load_file(str(resumed.lora))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [(tmp_path / run / "loss_log.jsonl").read_text() for run in ("straight", "killed")]
    assert logs[0] == logs[1]


def test_loss_log_and_progress_line(pair_overrides_for, tmp_path: Path, capsys) -> None:
    cfg = load_preference_config(None, pair_overrides_for(tmp_path / "run") + ["--progress=true"])
    history = train_preference(cfg).history
    log = [json.loads(line) for line in (tmp_path / "run" / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    for r in log:
        assert set(r) == {"step", "stage", "lr", "loss", "margin", "accuracy", "anchor"}
        for k in ("loss", "margin", "accuracy", "anchor"):
            assert r[k] == pytest.approx(history[k][r["step"] - 1], rel=1e-6, abs=1e-9), (r, k)
    err = capsys.readouterr().err
    last = {k: history[k][-1] for k in history}
    for shown in (f"loss={last['loss']:.4f}", f"margin={last['margin']:.3f}", f"acc={last['accuracy']:.2f}",
                  f"anchor={last['anchor']:.4f}"):
        assert shown in err, shown


@pytest.fixture(scope="module")
def on_base(pair_overrides_for, base_file: Path, tmp_path_factory: pytest.TempPathFactory):
    """A preference run on top of ``base_file`` (merged, tables frozen) and its exported LoRA."""
    out = tmp_path_factory.mktemp("pref_on_base")
    cfg = load_preference_config(None, pair_overrides_for(out) + [f"--preference.base=['{base_file}']",
                                                                 "--stages.0.lr=0.01"])
    return train_preference(cfg)


def test_exported_lora_fused_by_the_generator_gives_the_trained_model(on_base, base_file: Path, fixed_forward) -> None:
    sd = load_file(str(on_base.lora))
    assert set(sd) == {f"transformer.{n}.lora_{s}.weight" for n in diffusers_target_names(1, 1) for s in "AB"}
    model = on_base.model.cpu().eval()
    assert torch.equal(model.task_embedding, load_file(str(base_file))["dreamo_task_embedding.weight"])  # frozen
    gen = load_tiny_generator([LoraRequest(base_file), LoraRequest(on_base.lora)])
    base_only = load_tiny_generator([LoraRequest(base_file)])
    want, got, without = (fixed_forward(t, model, "a [ref#1] on a gray floor")
                          for t in (model.transformer, gen.transformer, base_only.transformer))
    assert (got - want).abs().max() < 1e-5
    assert (without - want).abs().max() > 1e-4  # the preference LoRA matters, so the match is not vacuous


def test_dreamo_command_loads_the_preference_lora(on_base, base_file: Path, pair_dir: Path, tmp_path: Path) -> None:
    ref = pair_dir / "refs" / "00000.png"
    common = ["--dreamo", str(base_file), "--ref", str(ref), "--steps", "2", "--width", "64", "--height", "64",
              "--ref-res", "256", "--dtype", "fp32", "--prompt", "a [ref#1] on a gray floor"]
    assert dreamo_main([*common, "--lora", str(on_base.lora), "--out", str(tmp_path / "with.png")]) == 0
    assert dreamo_main([*common, "--out", str(tmp_path / "without.png")]) == 0
    images = [np.asarray(Image.open(tmp_path / f"{n}.png")).astype(int) for n in ("with", "without")]
    assert images[0].shape == (64, 64, 3) and np.abs(images[0] - images[1]).max() > 0
    # the generator the command builds is base + LoRA fused by the loader (whose forward is the trained model's,
    # the test above): the same generation from it directly
    a = cli.build_parser().parse_args([*common, "--out", str(tmp_path / "unused.png")])
    gen = load_tiny_generator([LoraRequest(base_file), LoraRequest(on_base.lora)], None, a.seed)
    image = gen.generate(a.prompt, [cli.parse_ref(items) for items in a.ref], cli.settings_from_args(a, tiny=True))
    assert np.abs(images[0] - (image.numpy() * 255).round().astype(int)).max() <= 1


@pytest.mark.parametrize(("extra", "args", "words"), [
    ("", [], None),
    ("", ["--preference.mode=ipo"], "preference.mode: expected one of ('dpo', 'sft')"),
    ("loss: {diff: 1.0}\n", [], "config loss: the DreamO losses are not used"),
    ("", ["--preference.no_such=1"], "unknown key(s) ['no_such']"),
    ("", ["--preference.base=['missing.safetensors']"], "preference.base: missing.safetensors: file not found"),
    ("", ["--preference.dilation=0.9"], "preference.dilation: must be >= 1"),
    ("", ["--stages.0.ref_token_drop=0.5"], "keeps every reference token"),
], ids=["good", "mode", "loss-section", "unknown-key", "base-missing", "dilation", "token-drop"])
def test_command_exit_codes(pair_overrides_for, config_file, tmp_path: Path, capsys, extra, args, words) -> None:
    config = config_file(tmp_path / "c.yaml", pair_overrides_for(tmp_path / "run"), extra)
    code = main([str(config), *args])
    err = capsys.readouterr().err.strip().splitlines()
    if words is None:
        assert code == 0 and (tmp_path / "run" / "preference_lora.safetensors").is_file()
        return
    assert code == 2 and err[-1].startswith("training.preference: error: ") and words in err[-1], err
    assert "Traceback" not in "\n".join(err) and not (tmp_path / "run").exists()


def test_command_usage_and_non_finite_exit(pair_overrides_for, config_file, tmp_path: Path, capsys,
                                          monkeypatch) -> None:
    assert main([]) == 2 and "no config file given" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "python -m training.preference CONFIG.yaml" in capsys.readouterr().out
    import training.preference.objective as objective

    real = objective.flow_dpo_loss

    def nan_loss(*args, **kwargs):
        terms = real(*args, **kwargs)
        return type(terms)(terms.loss * float("nan"), terms.dpo, terms.margin, terms.accuracy, terms.anchor,
                           terms.margins)

    monkeypatch.setattr(objective, "flow_dpo_loss", nan_loss)
    config = config_file(tmp_path / "c.yaml", pair_overrides_for(tmp_path / "run"))
    assert main([str(config)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("training.preference: error: step 1 ") and "loss (on 1 of 1 process)" in err[-1]
