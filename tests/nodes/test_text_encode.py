"""DreamO Text Encode: [ref#i] -> DreamO's T5 row in the t5xxl token list (real FluxTokenizer, offline)."""

import pytest
import torch

from bench import comfy_harness as h


class RecordingClip:
    """A CLIP with ComfyUI's real FluxTokenizer; encoding records the tokens it was given."""

    def __init__(self):
        from comfy.text_encoders.flux import FluxTokenizer

        self.tokenizer = FluxTokenizer()
        self.encoded = None

    def tokenize(self, text, return_word_ids=False, **kw):
        return self.tokenizer.tokenize_with_weights(text, return_word_ids, **kw)

    def encode_from_tokens_scheduled(self, tokens, add_dict=None):
        self.encoded = tokens
        return [[torch.zeros(1, 1, 8), dict(add_dict or {})]]


@pytest.fixture(scope="module")
def dreamo_with_rows(loras_dir):
    (m,) = h.run_node("DreamO_LoadLoRA", model=h.tiny_flux(), lora_name="dreamo.safetensors", strength=1.0,
                      embedding_name="None")
    return m


def refs(indices):
    return h.dreamo_refs([torch.zeros(1, 16, 4, 4) for _ in indices], indices)


def hf_ids(clip, text):
    """Independent: the T5 SentencePiece ids straight from the HF tokenizer (ends with </s> = 1)."""
    return clip.tokenizer.t5xxl.tokenizer(text)["input_ids"]


def test_load_lora_attaches_the_last_ten_t5_rows(dreamo_with_rows):
    t5 = torch.randn(12, h.CTX, generator=torch.Generator().manual_seed(9))  # as written by harness.write_loras
    assert torch.equal(dreamo_with_rows.get_attachment("dreamo_t5_rows"), t5[-10:])


def test_placeholders_become_t5_rows_and_clip_l_keeps_the_text(dreamo_with_rows):
    clip = RecordingClip()
    text = "a dog [ref#1] and a cat[ref#2], on a beach"
    (cond,) = h.run_node("DreamO_TextEncode", clip=clip, model=dreamo_with_rows, text=text, guidance=2.5,
                         references=refs([1, 2]))
    assert cond[0][1]["guidance"] == 2.5
    rows = dreamo_with_rows.get_attachment("dreamo_t5_rows")
    assert clip.encoded["l"] == clip.tokenize(text)["l"]
    t5 = clip.encoded["t5xxl"][0]
    tensors = [(i, t[0]) for i, t in enumerate(t5) if torch.is_tensor(t[0])]
    assert [i for i, _ in tensors] == [len(hf_ids(clip, "a dog")) - 1,
                                       len(hf_ids(clip, "a dog")) - 1 + len(hf_ids(clip, "and a cat"))]
    assert torch.equal(tensors[0][1], rows[0]) and torch.equal(tensors[1][1], rows[1])
    ints = [t[0] for t in t5 if not torch.is_tensor(t[0]) and t[0] != 0]
    want = hf_ids(clip, "a dog")[:-1] + hf_ids(clip, "and a cat")[:-1] + hf_ids(clip, ", on a beach")
    assert ints == want


def test_no_placeholder_is_the_plain_flux_encode(dreamo_with_rows):
    clip = RecordingClip()
    h.run_node("DreamO_TextEncode", clip=clip, model=dreamo_with_rows, text="a red [car]", guidance=3.5)
    assert clip.encoded == clip.tokenize("a red [car]")


@pytest.mark.parametrize(("text", "indices", "message"), [
    ("a [ref#3] dog", [1, 2], r"\[ref#3\] has no reference"),
    ("a [ref#12] dog", [1], "out of range"),
    ("a [ref #1] dog", [1], "malformed"),
])
def test_unknown_placeholders_name_the_node(dreamo_with_rows, text, indices, message):
    with pytest.raises(ValueError, match=f"DreamO Text Encode.*{message}"):
        h.run_node("DreamO_TextEncode", clip=RecordingClip(), model=dreamo_with_rows, text=text, guidance=3.5,
                   references=refs(indices))


def test_placeholder_without_t5_rows_is_a_clear_error(loras_dir):
    m = h.with_dreamo_tables(h.tiny_flux())
    with pytest.raises(ValueError, match="DreamO Text Encode.*no DreamO T5 rows"):
        h.run_node("DreamO_TextEncode", clip=RecordingClip(), model=m, text="a [ref#1]", guidance=3.5,
                   references=refs([1]))
