"""The real text path (CLIP-L + T5 with DreamO's placeholder rows at T5's input) and the VAE codec, on a tiny
random diffusers FLUX folder (tests/generator/tiny_flux_folder.py)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from training.codec import VAECodec, encode_tokens
from training.config import ModelConfig
from training.loop import train
from training.model import build_model
from training.text.flux import FluxTextEncoder

HELPER = Path(__file__).parents[1] / "generator" / "tiny_flux_folder.py"
T = 12  # T5 sequence length for the tests


def _build_folder(path: Path) -> Path:
    spec = importlib.util.spec_from_file_location("tiny_flux_folder", HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_flux_folder(path)


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_folder(tmp_path_factory.mktemp("flux"))


@pytest.fixture
def encoder(flux_folder: Path) -> FluxTextEncoder:
    return FluxTextEncoder.from_folder(flux_folder, max_sequence_length=T)


def rows_for(enc: FluxTextEncoder) -> torch.Tensor:
    return torch.randn(10, enc.t5_dim, generator=torch.Generator().manual_seed(3))


def test_placeholder_token_ids_follow_the_official_prepare_t5(encoder: FluxTextEncoder) -> None:
    tok = encoder.t5_tokenizer
    assert tok.convert_tokens_to_ids("[ref#1]") == len(tok) - 10
    assert tok.convert_tokens_to_ids("[ref#9]") == len(tok) - 2
    assert tok.convert_tokens_to_ids("[res]") == len(tok) - 1
    assert encoder.t5.get_input_embeddings().weight.shape[0] == len(tok)  # table shrunk to the tokenizer, +10


def test_placeholder_rows_enter_t5_at_its_input(encoder: FluxTextEncoder) -> None:
    rows = rows_for(encoder)
    embeds, pooled, slots = encoder.encode(["a [ref#2] cat on [res] table"], rows)
    expected_slots = torch.full((1, T), -1)
    expected_slots[0, 1], expected_slots[0, 4] = 1, 9  # one word = one token in the tiny WordLevel tokenizer
    assert torch.equal(slots, expected_slots)
    # independent: T5's own table for every token, rows [ref#2] / [res] written by hand at positions 1 / 4
    ids = encoder.t5_tokenizer(["a [ref#2] cat on [res] table"], padding="max_length", max_length=T,
                               return_tensors="pt").input_ids
    by_hand = encoder.t5.shared.weight[ids].clone()
    by_hand[0, 1], by_hand[0, 4] = rows[1], rows[9]
    with torch.no_grad():
        expected = encoder.t5(inputs_embeds=by_hand).last_hidden_state
        embeds_other, _, _ = encoder.encode(["a [ref#2] cat on [res] table"], rows + 1.0)
    torch.testing.assert_close(embeds, expected)
    assert not torch.allclose(embeds_other, embeds)  # the rows matter
    assert pooled.shape == (1, encoder.pooled_dim)


def test_gradients_reach_the_rows_through_frozen_t5(encoder: FluxTextEncoder) -> None:
    rows = rows_for(encoder).requires_grad_(True)
    encoder.train()  # a parent's train() must not switch on T5 dropout
    assert not encoder.t5.training and not encoder.clip.training
    embeds, pooled, _ = encoder.encode(["a [ref#1] cat", "the [res] dog"], rows)
    (embeds.square().sum() + pooled.sum()).backward()
    used = rows.grad.abs().sum(-1)
    assert used[0] > 0 and used[9] > 0
    assert torch.equal(used[1:9], torch.zeros(8))
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())


def test_plain_caption_equals_flux_pipeline_encode_prompt(flux_folder: Path, encoder: FluxTextEncoder) -> None:
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(flux_folder), local_files_only=True)
    prompts = ["a photo of a cat on the table", "dog"]
    with torch.no_grad():
        ref_embeds, ref_pooled, _ = pipe.encode_prompt(prompt=prompts, prompt_2=None, max_sequence_length=T)
        embeds, pooled, slots = encoder.encode(prompts, rows_for(encoder))
    assert (slots < 0).all()
    torch.testing.assert_close(embeds, ref_embeds)
    torch.testing.assert_close(pooled, ref_pooled)


def test_width_mismatch_is_a_clear_error(flux_folder: Path) -> None:
    cfg = ModelConfig(text_encoder=str(flux_folder), text_max_tokens=T, joint_attention_dim=48, lora_rank=2)
    with pytest.raises(ValueError, match="model.text_encoder"):
        build_model(cfg)


def test_vae_codec_uses_flux_normalisation(flux_folder: Path) -> None:
    from diffusers import AutoencoderKL

    codec = VAECodec(str(flux_folder / "vae"))
    pixels = torch.rand(2, 32, 48, 3, generator=torch.Generator().manual_seed(0))
    tokens, grid = encode_tokens(codec, pixels)
    vae = AutoencoderKL.from_pretrained(flux_folder / "vae").eval()
    with torch.no_grad():
        z = vae.encode(pixels.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean  # (2, 16, 4, 6)
        expected = (z - 0.1159) * 0.3611
        decoded = vae.decode(z).sample.clamp(-1, 1)
    assert grid == (2, 3) and tokens.shape == (2, 6, 64)
    packed = expected.reshape(2, 16, 2, 2, 3, 2).permute(0, 2, 4, 1, 3, 5).reshape(2, 6, 64)  # 2x2 packing by hand
    torch.testing.assert_close(tokens, packed)
    torch.testing.assert_close(codec.decode(expected), decoded)


def test_training_steps_with_real_text_path_and_vae(flux_folder: Path, tiny_config) -> None:
    cfg = tiny_config(extra=[f"--model.pretrained={flux_folder / 'transformer'}", f"--model.text_encoder={flux_folder}",
                             f"--model.text_max_tokens={T}", "--model.codec=vae", f"--model.vae_path={flux_folder / 'vae'}",
                             "--stages=[{name: s1, steps: 3, lr: 0.002, mixture: {subject: 1.0}}]",
                             "--checkpoint_every=100"])
    result = train(cfg)
    assert len(result.history["loss"]) == 3 and all(math.isfinite(v) for v in result.history["loss"])
    model = result.model
    assert all(not p.requires_grad for p in model.text_encoder.parameters())
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "t5_embedding" in trained and any("lora_A" in n for n in trained)
    assert (Path(cfg.output_dir) / "dreamo_trained.safetensors").is_file()
    initial = dict(build_model(cfg.model).named_parameters())  # same seeds: the weights before training
    final = dict(model.named_parameters())
    lora_b = [n for n in trained if "lora_B" in n]
    assert all(torch.equal(initial[n], torch.zeros_like(initial[n])) for n in lora_b)  # peft starts B at zero
    assert sum(int(not torch.equal(final[n], initial[n])) for n in lora_b) == len(lora_b)  # every LoRA got updated
    assert not torch.equal(final["t5_embedding"], initial["t5_embedding"])
