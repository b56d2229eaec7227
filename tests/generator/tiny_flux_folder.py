"""Build a complete FLUX pipeline folder in diffusers layout with tiny random weights and offline tokenizers."""

from pathlib import Path

from dreamo_core.generator.schedule import make_scheduler
from dreamo_core.generator.tiny import tiny_transformer, tiny_vae

WORDS = "a photo of cat dog the on table from".split()


def word_tokenizer(max_len: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=max_len)


def build_tiny_flux_folder(path: Path) -> Path:
    import torch
    from diffusers import FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    t1, t2 = word_tokenizer(77), word_tokenizer(512)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(t1), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=77, projection_dim=32,
                                        pad_token_id=0, eos_token_id=1, bos_token_id=1))
    # T5's table is larger than its tokenizer, as the real one (32128 rows for 32100 tokens)
    t5 = T5EncoderModel(T5Config(vocab_size=len(t2) + 4, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2))
    pipe = FluxPipeline(scheduler=make_scheduler(), vae=tiny_vae(), text_encoder=clip, tokenizer=t1,
                        text_encoder_2=t5, tokenizer_2=t2, transformer=tiny_transformer(num_layers=2, num_single_layers=2))
    pipe.save_pretrained(str(path))
    return path
