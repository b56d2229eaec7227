"""DreamO weight files in every released format: detection, key normalisation, shape checks, broken files."""

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dreamo_core.spec import DreamOSpec
from dreamo_core.weights.formats import (
    LoraFormat,
    load_dreamo_weights,
    load_safetensors,
    parse_dreamo_state_dict,
)

TINY = DreamOSpec(hidden_size=32, num_double_blocks=2, num_single_blocks=2, t5_dim=16)
RANK = 4
# (down, up) shapes per tag for hidden 32, rank 4, written out by hand (single proj_lora input = 32 + 4 * 32)
SHAPES = {
    "qkv_lora1": ((4, 32), (96, 4)), "proj_lora1": ((4, 32), (32, 4)),
    "qkv_lora2": ((4, 32), (96, 4)), "proj_lora2": ((4, 32), (32, 4)),
    "qkv_lora": ((4, 32), (96, 4)), "proj_lora": ((4, 160), (32, 4)),
}
DOUBLE = ("qkv_lora1", "proj_lora1", "qkv_lora2", "proj_lora2")
SINGLE = ("qkv_lora", "proj_lora")


def xlabs_tensors(seed: int = 0) -> dict[tuple[str, int, str, str], torch.Tensor]:
    """{(kind, block, tag, side): tensor} for every LoRA matrix of TINY."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for kind, tags in (("double", DOUBLE), ("single", SINGLE)):
        for block in range(2):
            for tag in tags:
                down, up = SHAPES[tag]
                out[(kind, block, tag, "down")] = torch.randn(down, generator=g)
                out[(kind, block, tag, "up")] = torch.randn(up, generator=g)
    return out


SPELLINGS = {
    "underscore+processor": "{kind}_blocks_{block}.processor.{tag}.{side}.weight",
    "transformer prefix": "transformer.{kind}_blocks_{block}.{tag}.{side}.weight",
    "dots": "{kind}_blocks.{block}.processor.{tag}.{side}.weight",
}


def xlabs_sd(spelling: str = "underscore+processor", seed: int = 0) -> dict[str, torch.Tensor]:
    fmt = SPELLINGS[spelling]
    return {fmt.format(kind=k, block=b, tag=t, side=s): v for (k, b, t, s), v in xlabs_tensors(seed).items()}


def embedding_sd(t5_rows: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {
        "dreamo_task_embedding.weight": torch.randn(2, 32, generator=g),
        "dreamo_idx_embedding.weight": torch.randn(10, 32, generator=g),
        "dreamo_t5_embedding.weight": torch.randn(t5_rows, 16, generator=g),
    }


def write(tmp_path: Path, name: str, sd: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def test_original_dreamo_file(tmp_path):
    emb = embedding_sd(t5_rows=12)
    w = load_dreamo_weights(write(tmp_path, "dreamo.safetensors", {**xlabs_sd(), **emb}), TINY)
    assert w.lora_format is LoraFormat.XLABS
    assert w.source == "dreamo.safetensors"
    assert w.kind == "xlabs LoRA + DreamO embeddings"
    assert torch.equal(w.embeddings.task, emb["dreamo_task_embedding.weight"])
    assert torch.equal(w.embeddings.idx, emb["dreamo_idx_embedding.weight"])
    assert torch.equal(w.t5_rows, emb["dreamo_t5_embedding.weight"][2:])  # the LAST 10 of 12 rows
    assert len(w.lora) == 2 * 4 * 2 + 2 * 2 * 2
    assert "dreamo_task_embedding.weight" not in w.lora
    key = "double_blocks.1.processor.qkv_lora2.up.weight"
    assert torch.equal(w.lora[key], xlabs_tensors()[("double", 1, "qkv_lora2", "up")])
    assert torch.equal(w.lora["single_blocks.0.processor.proj_lora.down.weight"], xlabs_tensors()[("single", 0, "proj_lora", "down")])


def test_all_spellings_normalise_to_the_same_keys():
    expected_keys = sorted(
        [f"double_blocks.{b}.processor.{t}.{s}.weight" for b in range(2) for t in DOUBLE for s in ("down", "up")]
        + [f"single_blocks.{b}.processor.{t}.{s}.weight" for b in range(2) for t in SINGLE for s in ("down", "up")]
    )
    results = {name: parse_dreamo_state_dict(xlabs_sd(name), TINY).lora for name in SPELLINGS}
    for name, lora in results.items():
        assert sorted(lora) == expected_keys, name
        for key in expected_keys:
            assert torch.equal(lora[key], results["dots"][key]), (name, key)


def test_lora_only_files(tmp_path):
    for name in ("dreamo_cfg_distill.safetensors", "dreamo_quality_lora_neg.safetensors"):
        w = load_dreamo_weights(write(tmp_path, name, xlabs_sd("transformer prefix", seed=3)), TINY)
        assert (w.lora_format, w.embeddings, w.t5_rows) == (LoraFormat.XLABS, None, None)
        assert w.kind == "xlabs LoRA"
        assert len(w.lora) == 24


def test_embedding_only_file(tmp_path):
    w = load_dreamo_weights(write(tmp_path, "embedding.safetensors", embedding_sd(t5_rows=10)), TINY)
    assert (w.lora_format, w.lora) == (LoraFormat.NONE, {})
    assert w.kind == "DreamO embeddings"
    assert w.embeddings.task.shape == (2, 32) and w.embeddings.idx.shape == (10, 32)
    assert w.t5_rows.shape == (10, 16)


def test_comfyui_format(tmp_path):
    sd = {
        "diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight": torch.randn(4, 32),
        "diffusion_model.double_blocks.0.img_attn.qkv.lora_up.weight": torch.randn(96, 4),
        "diffusion_model.single_blocks.1.linear2.lora_down.weight": torch.randn(4, 160),
        "diffusion_model.single_blocks.1.linear2.lora_up.weight": torch.randn(32, 4),
        "diffusion_model.single_blocks.1.linear2.alpha": torch.tensor(4.0),
    }
    w = load_dreamo_weights(write(tmp_path, "dreamo_comfyui.safetensors", sd), TINY)
    assert w.lora_format is LoraFormat.COMFY
    assert sorted(w.lora) == sorted(sd)  # left as they are
    kohya = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.randn(4, 32),
             "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.randn(96, 4)}
    assert parse_dreamo_state_dict(kohya, TINY).lora_format is LoraFormat.COMFY


def test_diffusers_format(tmp_path):
    sd = {
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.randn(4, 32),
        "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn(32, 4),
        "transformer.single_transformer_blocks.1.proj_out.lora_A.weight": torch.randn(4, 160),
        "transformer.single_transformer_blocks.1.proj_out.lora_B.weight": torch.randn(32, 4),
    }
    w = load_dreamo_weights(write(tmp_path, "dreamo_dpo_lora.safetensors", sd), TINY)
    assert w.lora_format is LoraFormat.DIFFUSERS
    assert w.kind == "diffusers LoRA"
    assert sorted(w.lora) == sorted(sd)


def replaced(sd: dict[str, torch.Tensor], key: str, value: torch.Tensor | None) -> dict[str, torch.Tensor]:
    out = dict(sd)
    if value is None:
        del out[key]
    else:
        out[key] = value
    return out


@pytest.mark.parametrize(
    "key, value, message",
    [
        # up of rank 8 with a rank-4 down
        ("double_blocks_0.processor.qkv_lora1.up.weight", torch.zeros(96, 8),
         r"f\.safetensors: double_blocks\.0\.processor\.qkv_lora1 has down \(4, 32\) / up \(96, 8\), expected \(4, 32\) / \(96, 4\) "
         r"for a FLUX model of width 32"),
        # single proj_lora input must be hidden * 5 = 160
        ("single_blocks_1.processor.proj_lora.down.weight", torch.zeros(4, 128),
         r"single_blocks\.1\.processor\.proj_lora has down \(4, 128\) / up \(32, 4\), expected \(4, 160\) / \(32, 4\)"),
        # qkv up must be 3 * hidden rows
        ("single_blocks_0.processor.qkv_lora.up.weight", torch.zeros(32, 4),
         r"single_blocks\.0\.processor\.qkv_lora has down \(4, 32\) / up \(32, 4\), expected \(4, 32\) / \(96, 4\)"),
        ("double_blocks_1.processor.proj_lora2.down.weight", torch.zeros(4, 64),
         r"double_blocks\.1\.processor\.proj_lora2 has down \(4, 64\)"),
        # a scalar where a matrix belongs
        ("double_blocks_0.processor.proj_lora1.down.weight", torch.tensor(1.0),
         r"double_blocks\.0\.processor\.proj_lora1 has down \(\) / up \(32, 4\), expected two 2-D matrices"),
        # block index beyond the spec
        ("double_blocks_2.processor.proj_lora1.down.weight", torch.zeros(4, 32),
         r"'double_blocks_2\.processor\.proj_lora1\.down\.weight': block 2 does not exist \(the model has 2 double blocks\)"),
        ("single_blocks_5.processor.qkv_lora.up.weight", torch.zeros(96, 4),
         r"block 5 does not exist \(the model has 2 single blocks\)"),
        # tag of the other block kind
        ("single_blocks_0.processor.qkv_lora1.down.weight", torch.zeros(4, 32),
         r"single blocks use \('qkv_lora', 'proj_lora'\), not 'qkv_lora1'"),
        # missing partners
        ("double_blocks_0.processor.proj_lora1.up.weight", None,
         r"truncated LoRA: double_blocks\.0\.processor\.proj_lora1\.down\.weight has no matching double_blocks\.0\.processor\.proj_lora1\.up\.weight"),
        ("single_blocks_1.processor.qkv_lora.down.weight", None,
         r"truncated LoRA: single_blocks\.1\.processor\.qkv_lora\.up\.weight has no matching \.down\.weight"),
    ],
)
def test_xlabs_shape_and_key_checks(key, value, message):
    with pytest.raises(ValueError, match=message):
        parse_dreamo_state_dict(replaced(xlabs_sd(), key, value), TINY, "f.safetensors")


def test_tiny_file_rejected_by_the_flux_dev_spec():
    with pytest.raises(ValueError, match=r"expected \(4, 3072\) / \(9216, 4\) for a FLUX model of width 3072"):
        parse_dreamo_state_dict(xlabs_sd(), source="dreamo.safetensors")


def test_two_spellings_of_one_key_in_one_file():
    sd = xlabs_sd()
    sd["double_blocks.0.processor.qkv_lora1.down.weight"] = sd["double_blocks_0.processor.qkv_lora1.down.weight"]
    with pytest.raises(ValueError, match=r"two keys map to 'double_blocks\.0\.processor\.qkv_lora1\.down\.weight'"):
        parse_dreamo_state_dict(sd, TINY)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("dreamo_task_embedding.weight", torch.zeros(3, 32), r"e\.safetensors: dreamo_task_embedding has shape \(3, 32\), expected \(2, 32\)"),
        ("dreamo_idx_embedding.weight", torch.zeros(10, 64), r"e\.safetensors: dreamo_idx_embedding has shape \(10, 64\), expected \(10, 32\)"),
        ("dreamo_idx_embedding.weight", None, r"e\.safetensors: truncated DreamO embeddings: dreamo_idx_embedding\.weight is missing"),
        ("dreamo_task_embedding.weight", None, r"truncated DreamO embeddings: dreamo_task_embedding\.weight is missing"),
        ("dreamo_t5_embedding.weight", torch.zeros(9, 16), r"dreamo_t5_embedding\.weight has shape \(9, 16\), expected \(N >= 10, 16\)"),
        ("dreamo_t5_embedding.weight", torch.zeros(10, 32), r"dreamo_t5_embedding\.weight has shape \(10, 32\), expected \(N >= 10, 16\)"),
    ],
)
def test_embedding_shape_checks(key, value, message):
    with pytest.raises(ValueError, match=message):
        parse_dreamo_state_dict(replaced(embedding_sd(), key, value), TINY, "e.safetensors")


@pytest.mark.parametrize(
    "sd, message",
    [
        ({"diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight": torch.zeros(4, 32)},
         r"c\.safetensors: truncated LoRA: diffusion_model\.double_blocks\.0\.img_attn\.qkv\.lora_down\.weight has no matching "
         r"diffusion_model\.double_blocks\.0\.img_attn\.qkv\.lora_up\.weight"),
        ({"transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(32, 4)},
         r"truncated LoRA: transformer\.transformer_blocks\.0\.attn\.to_q\.lora_B\.weight has no matching \.lora_A\.weight"),
        ({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32),
          "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(32, 8)},
         r"transformer\.transformer_blocks\.0\.attn\.to_q\.lora_A\.weight rank 4 does not match "
         r"transformer\.transformer_blocks\.0\.attn\.to_q\.lora_B\.weight \(32, 8\)"),
    ],
)
def test_standard_lora_pair_checks(sd, message):
    with pytest.raises(ValueError, match=message):
        parse_dreamo_state_dict(sd, TINY, "c.safetensors")


def test_mixed_layouts_rejected():
    sd = {**xlabs_sd(), "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32),
          "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(32, 4)}
    with pytest.raises(ValueError, match=r"m\.safetensors: mixes LoRA layouts \['diffusers', 'xlabs'\]; expected one"):
        parse_dreamo_state_dict(sd, TINY, "m.safetensors")


def test_non_dreamo_file_names_file_and_expectation(tmp_path):
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
          "model.diffusion_model.input_blocks.0.0.bias": torch.zeros(8)}
    with pytest.raises(ValueError, match=r"sd15_unet\.safetensors: not a DreamO file: 2 unrecognised key\(s\), "
                                         r"e\.g\. .*input_blocks.*Expected DreamO embeddings \(dreamo_task_embedding\.weight"):
        load_dreamo_weights(write(tmp_path, "sd15_unet.safetensors", sd), TINY)


def test_empty_file(tmp_path):
    with pytest.raises(ValueError, match=r"empty\.safetensors: the file holds no tensors"):
        load_dreamo_weights(write(tmp_path, "empty.safetensors", {}), TINY)


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_truncated_file_names_the_file_and_both_sizes(tmp_path, cut):
    path = write(tmp_path, "dreamo.safetensors", {**xlabs_sd(), **embedding_sd()})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])
    message = (rf"dreamo\.safetensors: not a readable safetensors file: truncated: header says {len(data)} bytes, "
               rf"file has {len(data) - cut}")
    with pytest.raises(ValueError, match=message):
        load_dreamo_weights(path, TINY)


def test_cut_inside_the_header(tmp_path):
    path = write(tmp_path, "dreamo.safetensors", embedding_sd())
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    path.write_bytes(data[:20])
    with pytest.raises(ValueError, match=rf"truncated: header says {8 + n} bytes, file has 20"):
        load_dreamo_weights(path, TINY)


def pickled(zip_format: bool) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"dreamo_task_embedding.weight": torch.zeros(2, 32)}, buf, _use_new_zipfile_serialization=zip_format)
    return buf.getvalue()


@pytest.mark.parametrize(("content", "message"), [
    (b"", r"the file is 0 bytes"),
    (b"\x10\x00\x00", r"the file has only 3 bytes"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 1612345678\n",
     r"this is a git-lfs pointer \(\d+ bytes of text\), not the weights: download the real file"),
    (pickled(True), r"this is a pickle/zip checkpoint \(torch\.save format\) renamed to \.safetensors"),
    (pickled(False), r"this is a pickle/zip checkpoint \(torch\.save format\) renamed to \.safetensors"),
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", r"this is an HTML page"),
    (b"\x08\x00\x00\x00\x00\x00\x00\x00not json", r"corrupted: the safetensors header is not valid JSON"),
], ids=["0-bytes", "3-bytes", "lfs-pointer", "zip-pickle", "legacy-pickle", "html", "bad-json"])
def test_what_a_broken_file_looks_like_is_named(tmp_path, content, message):
    path = tmp_path / "dreamo.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"dreamo\.safetensors: not a readable safetensors file: " + message):
        load_dreamo_weights(path, TINY)


def test_a_valid_header_starting_with_a_pickle_byte_is_read(tmp_path):
    """A header length of 0x80 + 256 k begins with the pickle PROTO byte: the header decides, not the byte."""
    from dreamo_core.weights.formats import describe_unreadable_safetensors

    for pad in range(300):
        path = write(tmp_path, "x.safetensors", {"dreamo_task_embedding.weight": torch.zeros(2, 32),
                                                 "dreamo_idx_embedding.weight": torch.zeros(10, 32), "p" * pad: torch.zeros(1)})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length whose first byte is 0x80")
    assert describe_unreadable_safetensors(path) is None
    assert set(load_safetensors(path)) == {"dreamo_task_embedding.weight", "dreamo_idx_embedding.weight", "p" * pad}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("key", ["dreamo_task_embedding.weight", "dreamo_idx_embedding.weight", "dreamo_t5_embedding.weight",
                                 "double_blocks_1.processor.qkv_lora1.up.weight"])
def test_non_finite_tables_and_lora_are_refused(key, bad):
    sd = {**xlabs_sd(), **embedding_sd()}
    sd[key] = sd[key].clone()
    sd[key][1, 2] = bad
    with pytest.raises(ValueError, match=re.escape(f"e.safetensors: {key} {tuple(sd[key].shape)} contains 1 NaN/infinite")):
        parse_dreamo_state_dict(sd, TINY, "e.safetensors")
    sd[key][1, 2] = 0.0
    assert parse_dreamo_state_dict(sd, TINY, "e.safetensors").embeddings is not None  # the same file, finite: fine


def test_non_finite_fp8_lora_is_refused():
    sd = xlabs_sd()
    key = "single_blocks_0.processor.proj_lora.down.weight"
    t = sd[key].clone()
    t[0, 0] = float("nan")
    sd[key] = t.to(torch.float8_e5m2)  # e5m2 has NaN; isfinite is not implemented for 8-bit floats on CPU
    with pytest.raises(ValueError, match=re.escape(key) + r" .*contains 1 NaN/infinite"):
        parse_dreamo_state_dict(sd, TINY, "f.safetensors")


@pytest.mark.parametrize("name", ["dreamo.ckpt", "dreamo.pt", "dreamo.bin"])
def test_pickle_formats_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not read")
    with pytest.raises(ValueError, match=re.escape(name) + r": only \.safetensors files are accepted \(no pickle checkpoints"):
        load_dreamo_weights(path, TINY)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"DreamO weights file not found: .*nowhere\.safetensors"):
        load_dreamo_weights(tmp_path / "nowhere.safetensors", TINY)
