"""The real-weights path (FLUX in diffusers layout + official DreamO files) on a tiny random FLUX folder."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from tiny_flux_folder import build_tiny_flux_folder

from dreamo_core.generator.cli import main
from dreamo_core.generator.loading import LoraRequest, load_flux_generator

H, R = 32, 4  # tiny hidden size, LoRA rank


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return build_tiny_flux_folder(tmp_path_factory.mktemp("flux"))


@pytest.fixture(scope="module")
def dreamo_file(tmp_path_factory):
    """An original-format dreamo.safetensors for the tiny model: XLabs keys with the official underscore spelling."""
    g = torch.Generator().manual_seed(1)
    sd = {}
    for i in range(2):
        for tag, up_rows in (("qkv_lora1", 3 * H), ("proj_lora1", H), ("qkv_lora2", 3 * H), ("proj_lora2", H)):
            sd[f"double_blocks_{i}.processor.{tag}.down.weight"] = torch.randn(R, H, generator=g)
            sd[f"double_blocks_{i}.processor.{tag}.up.weight"] = torch.randn(up_rows, R, generator=g)
        sd[f"single_blocks_{i}.processor.qkv_lora.down.weight"] = torch.randn(R, H, generator=g)
        sd[f"single_blocks_{i}.processor.qkv_lora.up.weight"] = torch.randn(3 * H, R, generator=g)
        sd[f"single_blocks_{i}.processor.proj_lora.down.weight"] = torch.randn(R, 5 * H, generator=g)
        sd[f"single_blocks_{i}.processor.proj_lora.up.weight"] = torch.randn(H, R, generator=g)
    sd["dreamo_task_embedding.weight"] = torch.randn(2, H, generator=g)
    sd["dreamo_idx_embedding.weight"] = torch.randn(10, H, generator=g)
    sd["dreamo_t5_embedding.weight"] = torch.randn(12, 32, generator=g)  # N >= 10 rows, the last 10 are used
    path = tmp_path_factory.mktemp("dreamo") / "dreamo.safetensors"
    save_file(sd, str(path))
    return path, sd


def test_loader_fuses_lora_embeddings_and_placeholders(flux_dir, dreamo_file):
    from diffusers import FluxTransformer2DModel

    path, sd = dreamo_file
    base = FluxTransformer2DModel.from_pretrained(str(flux_dir / "transformer"))
    gen = load_flux_generator(flux_dir, [LoraRequest(path, 0.5)], None, "cpu", torch.float32)
    tr = gen.transformer
    # to_k of double block 1 = base + 0.5 * up[H:2H] @ down (rows of the fused qkv up matrix)
    down, up = sd["double_blocks_1.processor.qkv_lora1.down.weight"], sd["double_blocks_1.processor.qkv_lora1.up.weight"]
    expected = base.transformer_blocks[1].attn.to_k.weight + 0.5 * up[H : 2 * H] @ down
    assert torch.allclose(tr.transformer_blocks[1].attn.to_k.weight, expected, atol=1e-5)
    down, up = sd["single_blocks_0.processor.proj_lora.down.weight"], sd["single_blocks_0.processor.proj_lora.up.weight"]
    expected = base.single_transformer_blocks[0].proj_out.weight + 0.5 * up @ down
    assert torch.allclose(tr.single_transformer_blocks[0].proj_out.weight, expected, atol=1e-5)
    assert torch.equal(gen.tables.task, sd["dreamo_task_embedding.weight"])
    assert torch.equal(gen.tables.idx, sd["dreamo_idx_embedding.weight"])
    # placeholders: T5 table shrunk to the tokenizer, 10 tokens added, rows = last 10 file rows
    pipe = gen.prompt_encoder.pipe
    ids = pipe.tokenizer_2.convert_tokens_to_ids(["[ref#1]", "[ref#9]", "[res]"])
    emb = pipe.text_encoder_2.get_input_embeddings().weight
    assert ids[2] == emb.shape[0] - 1 and ids[0] == emb.shape[0] - 10
    assert torch.equal(emb[ids[0]], sd["dreamo_t5_embedding.weight"][2])
    assert torch.equal(emb[ids[2]], sd["dreamo_t5_embedding.weight"][11])


def test_cli_generates_with_real_loading_path(flux_dir, dreamo_file, tmp_path):
    ref = tmp_path / "ref.png"
    rgba = np.zeros((80, 64, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[20:60, 16:48, 3] = 255  # alpha: foreground box
    Image.fromarray(rgba, "RGBA").save(ref)
    out = tmp_path / "out.png"
    rc = main(["--flux", str(flux_dir), "--dreamo", str(dreamo_file[0]), "--ref", str(ref), "task=ip", "index=2",
               "--prompt", "a photo of [ref#2]", "--width", "64", "--height", "80", "--steps", "2", "--ref-res", "256",
               "--dtype", "fp32", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    assert Image.open(out).size == (64, 80)


def test_cli_errors_name_the_argument(flux_dir, tmp_path, capsys):
    assert main(["--flux", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a diffusers FLUX folder" in capsys.readouterr().err
    assert main(["--preset", "v1.1", "--dreamo-dir", str(tmp_path)]) == 2
    assert "missing official DreamO file" in capsys.readouterr().err
    assert main(["--preset", "v1.1"]) == 2
    assert "--preset needs --dreamo-dir" in capsys.readouterr().err
    bad = tmp_path / "sdxl.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2)}, str(bad))
    assert main(["--dreamo", str(bad), "--steps", "1", "--width", "64", "--height", "64"]) == 2
    err = capsys.readouterr().err
    assert "sdxl.safetensors: not a DreamO file" in err
    ref = tmp_path / "r.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(ref)
    assert main(["--ref", str(ref), "task=tryon"]) == 2
    assert "task must be one of ip, id, style" in capsys.readouterr().err
    assert main(["--ref", str(ref), "colour=red"]) == 2
    assert "unknown option 'colour=red'" in capsys.readouterr().err
