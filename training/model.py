"""The trainable DreamO model: frozen FLUX transformer + peft LoRA on the official targets + the three
trainable tables (task (2, D), idx (10, D), T5 placeholder rows (10, t5_dim)).

``DreamOTrainModel.forward`` is DreamO's forward (``dreamo_core.generator.flux_forward``: diagonal position ids,
condition embedding added after ``x_embedder`` by a per-call hook), extended by an optional reference-token
drop (stage 3) and the routing capture. Being one ``nn.Module`` it can be wrapped by DDP / FSDP as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dreamo_core.conditioning.embeddings import ConditionEmbeddings, build_condition_embeddings
from dreamo_core.conditioning.position_ids import dreamo_position_ids
from dreamo_core.conditioning.token_layout import TokenGrid, reference_spans
from dreamo_core.generator.flux_forward import ReferenceTokens, added_to_output
from dreamo_core.generator.tiny import flux_transformer
from dreamo_core.weights.lora_targets import diffusers_target_names

from .attention_capture import RoutingCapture, install_capture_processors
from .config import ModelConfig
from .text.cache import CachedTextEncoder
from .text.flux import FluxTextEncoder
from .text.tiny_hashed import TinyTextEncoder


def tiny_transformer(cfg: ModelConfig) -> nn.Module:
    """A random tiny ``FluxTransformer2DModel`` of the config's sizes (seeded by ``cfg.seed``, global RNG untouched)."""
    return flux_transformer(cfg.seed, num_layers=cfg.num_layers, num_single_layers=cfg.num_single_layers,
                            attention_head_dim=cfg.attention_head_dim, num_attention_heads=cfg.num_attention_heads,
                            joint_attention_dim=cfg.joint_attention_dim, pooled_projection_dim=cfg.pooled_projection_dim,
                            axes_dims_rope=list(cfg.axes_dims_rope)).train()


def base_dtype(cfg: ModelConfig) -> torch.dtype:
    """Storage dtype of the frozen base (transformer, CLIP / T5): bf16 with ``model.bf16`` (resolved), else fp32."""
    return torch.bfloat16 if cfg.uses_bf16 else torch.float32


def trainables_to_fp32(module: nn.Module) -> None:
    """Cast every parameter that requires grad to fp32 in place (master weights of LoRA and the tables)."""
    for p in module.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


def load_transformer(cfg: ModelConfig) -> nn.Module:
    """The frozen base transformer (in ``base_dtype``) with fp32 LoRA added (peft, per model) and the capture
    processors installed."""
    from diffusers import FluxTransformer2DModel

    if cfg.pretrained:
        transformer = FluxTransformer2DModel.from_pretrained(cfg.pretrained, torch_dtype=base_dtype(cfg))
    else:
        transformer = nn.Module.to(tiny_transformer(cfg), base_dtype(cfg))  # (diffusers' .to warns for tiny models)
    return add_trainables(transformer, cfg)


def add_trainables(transformer: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Freeze ``transformer``, add the official-target LoRA (fp32, seeded), install the capture processors and,
    with ``cfg.gradient_checkpointing``, diffusers' per-block checkpointing. In place; returns it."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha or cfg.lora_rank, init_lora_weights="gaussian",
                      target_modules=diffusers_target_names(len(transformer.transformer_blocks),
                                                                       len(transformer.single_transformer_blocks)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        transformer.add_adapter(lora)
    trainables_to_fp32(transformer)
    install_capture_processors(transformer)
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return transformer


class DreamOTrainModel(nn.Module):
    """Transformer (LoRA trainable) + text encoder (frozen) + ``task_embedding`` (2, D), ``idx_embedding``
    (10, D), ``t5_embedding`` (10, t5_dim) placeholder rows ``[ref#1..9]``, ``[res]``."""

    def __init__(self, transformer: nn.Module, text_encoder: TinyTextEncoder | FluxTextEncoder | CachedTextEncoder, init_std: float = 0.02,
                 seed: int = 0):
        super().__init__()
        self.transformer, self.text_encoder = transformer, text_encoder
        d = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        t5_dim = transformer.config.joint_attention_dim
        pooled_dim = transformer.config.pooled_projection_dim
        if (text_encoder.t5_dim, text_encoder.pooled_dim) != (t5_dim, pooled_dim):
            raise ValueError(f"model.text_encoder: text width {text_encoder.t5_dim} / pooled width "
                             f"{text_encoder.pooled_dim} do not match the transformer's joint_attention_dim {t5_dim} / "
                             f"pooled_projection_dim {pooled_dim}")
        g = torch.Generator().manual_seed(seed + 2)
        self.task_embedding = nn.Parameter(torch.randn(2, d, generator=g) * init_std)
        self.idx_embedding = nn.Parameter(torch.randn(10, d, generator=g) * init_std)
        self.t5_embedding = nn.Parameter(torch.randn(10, t5_dim, generator=g) * text_encoder.embedding_std())

    @property
    def tables(self) -> ConditionEmbeddings:
        return ConditionEmbeddings(self.task_embedding, self.idx_embedding)

    def encode_text(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> prompt_embeds (B, T, t5_dim) with the trainable placeholder rows substituted, pooled (B, P),
        slots (B, T) (placeholder row per token, -1 elsewhere)."""
        return self.text_encoder.encode(list(captions), self.t5_embedding)

    def forward(
        self, latents: torch.Tensor, target_grid: TokenGrid, refs: Sequence[ReferenceTokens], sigma: torch.Tensor,
        guidance: torch.Tensor, captions: Sequence[str], ref_keep: torch.Tensor | None = None,
        capture_layers: frozenset[str] = frozenset(), route_mode: str = "softmax", with_placeholders: bool = False,
    ) -> tuple[torch.Tensor, RoutingCapture | None]:
        """Velocity at the target tokens (B, N, 64) and the routing capture (None without capture layers).

        ref_keep: (K,) sorted positions of the kept reference tokens within the concatenated references
        (None keeps all). Ids and embeddings are computed for the full sequence and then subset, so kept
        tokens keep their DreamO positions."""
        prompt_embeds, pooled, slots = self.encode_text(captions)
        n = latents.shape[1]
        lengths = [r.tokens.shape[1] for r in refs]
        emb = build_condition_embeddings(self.tables, n, lengths, [r.index for r in refs])  # (L, D)
        ids = dreamo_position_ids(target_grid, [r.grid for r in refs]).to(latents.device)  # (L, 3)
        hidden = torch.cat([latents, *[r.tokens.to(latents) for r in refs]], dim=1)  # (B, L, 64)
        spans = reference_spans(n, lengths)
        if ref_keep is not None:
            keep = torch.cat([torch.arange(n, device=latents.device), n + ref_keep.to(latents.device)])
            hidden, ids, emb = hidden[:, keep], ids[keep], emb[keep]
            spans = [(n + int((ref_keep < s - n).sum()), n + int((ref_keep < e - n).sum())) for s, e in spans]
        capture = None
        if capture_layers:
            pos = None
            if with_placeholders:  # text position of each reference's own [ref#k] (0 where absent; weighted out)
                hits = torch.stack([(slots == r.index - 1).float() for r in refs], dim=1)  # (B, n_refs, T)
                pos = hits.argmax(dim=-1)
            capture = RoutingCapture(prompt_embeds.shape[1], n, spans, capture_layers, route_mode, pos)
        with added_to_output(self.transformer.x_embedder, emb):
            out = self.transformer(
                hidden_states=hidden, timestep=sigma, guidance=guidance, pooled_projections=pooled,
                encoder_hidden_states=prompt_embeds, img_ids=ids,
                txt_ids=torch.zeros(prompt_embeds.shape[1], 3, device=latents.device),
                joint_attention_kwargs={"dreamo_capture": capture} if capture is not None else None, return_dict=False,
            )[0]
        return out[:, :n], capture


def build_text_encoder(cfg: ModelConfig) -> TinyTextEncoder | FluxTextEncoder | CachedTextEncoder:
    """CLIP-L + T5 from the FLUX folder ``cfg.text_encoder``, else the tiny one; frozen, in ``base_dtype``;
    behind the disk cache of plain captions with ``cfg.text_cache``."""
    if cfg.text_encoder:
        encoder = FluxTextEncoder.from_folder(cfg.text_encoder, cfg.text_max_tokens, base_dtype(cfg))
    else:
        encoder = TinyTextEncoder(cfg.joint_attention_dim, cfg.pooled_projection_dim, cfg.text_max_tokens,
                                  seed=cfg.seed, context=cfg.tiny_text_context).to(base_dtype(cfg))
    return CachedTextEncoder(encoder, cfg.text_cache) if cfg.text_cache else encoder


def build_model(cfg: ModelConfig) -> DreamOTrainModel:
    """Text encoder (frozen) + transformer with LoRA + trainable tables (the only trainable parameters)."""
    text = build_text_encoder(cfg)
    return DreamOTrainModel(load_transformer(cfg), text, cfg.embedding_init_std, cfg.seed)
