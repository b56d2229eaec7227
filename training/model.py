"""The trainable DreamO model: frozen FLUX transformer + peft LoRA on the official targets + the three
trainable tables (task (2, D), idx (10, D), T5 placeholder rows (10, t5_dim)).

``DreamOTrainModel.forward`` is DreamO's forward: its inputs are built by the generator's own ``dreamo_inputs``
(tokens ``[target | refs]``, diagonal position ids or a reference's placement box, the condition embedding) and
run by ``transformer_on_inputs`` (the embedding added after ``x_embedder`` by a per-call hook), extended by an
optional reference-token drop (stage 3) and the routing capture. Being one ``nn.Module`` it can be wrapped by DDP /
FSDP as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from dreamo_core.conditioning.embeddings import ConditionEmbeddings
from dreamo_core.conditioning.token_layout import TokenGrid, reference_spans
from dreamo_core.generator.flux_forward import (
    DreamOInputs,
    ReferenceTokens,
    dreamo_inputs,
    transformer_on_inputs,
)
from dreamo_core.generator.tiny import flux_transformer
from dreamo_core.spec import FLUX_DEV
from dreamo_core.weights.lora_targets import diffusers_target_names

from .attention_capture import RoutingCapture, install_capture_processors
from .config import ModelConfig
from .text.cache import CachedTextEncoder
from .text.flux import FluxTextEncoder
from .text.tiny_hashed import TinyTextEncoder

IDS_DTYPE = torch.float32  # the trainer's position ids stay float32, also with a bf16 base (not rounded)


def random_transformer(cfg: ModelConfig, device: torch.device | str | None = None) -> nn.Module:
    """A random tiny ``FluxTransformer2DModel`` of the config's sizes (seeded by ``cfg.seed``, global RNG untouched),
    built on ``device`` (None: the CPU)."""
    return flux_transformer(cfg.seed, device, num_layers=cfg.num_layers, num_single_layers=cfg.num_single_layers,
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


def load_transformer(cfg: ModelConfig, device: torch.device | str | None = None) -> nn.Module:
    """The frozen base transformer (in ``base_dtype``) with fp32 LoRA added (peft, per model) and the capture
    processors installed; a random one is built on ``device`` (None: the CPU)."""
    from diffusers import FluxTransformer2DModel

    if cfg.pretrained:
        transformer = FluxTransformer2DModel.from_pretrained(cfg.pretrained, torch_dtype=base_dtype(cfg))
    else:
        transformer = nn.Module.to(random_transformer(cfg, device), base_dtype(cfg))  # (diffusers' .to warns for tiny models)
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
        torch.manual_seed(cfg.trainables_seed + 1)
        transformer.add_adapter(lora)
    trainables_to_fp32(transformer)
    install_capture_processors(transformer)
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return transformer


def kept_reference_tokens(inputs: DreamOInputs, n_target: int, spans: list[tuple[int, int]], ref_keep: torch.Tensor,
                          ) -> tuple[DreamOInputs, list[tuple[int, int]]]:
    """The stage-3 reference-token drop: keep the target and the reference tokens at ``ref_keep`` (K,) (sorted
    positions within the concatenated references); ids and embedding were built for the full sequence, so the
    kept tokens keep their DreamO positions. Returns the subset inputs and each reference's new [start, end)."""
    if inputs.bias is not None:
        raise ValueError("the reference-token drop takes no strength bias (the trainer runs at strength 1)")
    n, device = n_target, inputs.hidden.device
    keep = torch.cat([torch.arange(n, device=device), n + ref_keep.to(device)])
    subset = replace(inputs, hidden=inputs.hidden[:, keep], img_ids=inputs.img_ids[keep], embedding=inputs.embedding[keep])
    return subset, [(n + int((ref_keep < s - n).sum()), n + int((ref_keep < e - n).sum())) for s, e in spans]


class DreamOTrainModel(nn.Module):
    """Transformer (LoRA trainable) + text encoder (frozen) + ``task_embedding`` (num_task_rows, D),
    ``idx_embedding`` (num_idx_rows, D), ``t5_embedding`` (t5_placeholder_rows, t5_dim) placeholder rows
    ``[ref#1..9]``, ``[res]``; the row counts are ``FLUX_DEV``'s (2, 10, 10), the official file's."""

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
        self.task_embedding = nn.Parameter(torch.randn(FLUX_DEV.num_task_rows, d, generator=g) * init_std)
        self.idx_embedding = nn.Parameter(torch.randn(FLUX_DEV.num_idx_rows, d, generator=g) * init_std)
        self.t5_embedding = nn.Parameter(torch.randn(FLUX_DEV.t5_placeholder_rows, t5_dim, generator=g)
                                         * text_encoder.embedding_std())

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

        Inputs as the generator's (``dreamo_inputs``: a reference's ``box`` places its ids), ids in ``IDS_DTYPE``.
        ref_keep: (K,) sorted positions of the kept reference tokens within the concatenated references
        (None keeps all; ``kept_reference_tokens``)."""
        prompt_embeds, pooled, slots = self.encode_text(captions)
        n = latents.shape[1]
        inputs = dreamo_inputs(latents, target_grid, refs, self.tables, prompt_embeds.shape[1], IDS_DTYPE)
        spans = reference_spans(n, [r.tokens.shape[1] for r in refs])
        if ref_keep is not None:
            inputs, spans = kept_reference_tokens(inputs, n, spans, ref_keep)
        capture = None
        if capture_layers:
            pos = None
            if with_placeholders:  # text position of each reference's own [ref#k] (0 where absent; weighted out)
                hits = torch.stack([(slots == r.index - 1).float() for r in refs], dim=1)  # (B, n_refs, T)
                pos = hits.argmax(dim=-1)
            capture = RoutingCapture(prompt_embeds.shape[1], n, spans, capture_layers, route_mode, pos)
        out = transformer_on_inputs(self.transformer, inputs, n, sigma, guidance, pooled, prompt_embeds,
                                    {"dreamo_capture": capture} if capture is not None else None)
        return out, capture


def build_text_encoder(cfg: ModelConfig) -> TinyTextEncoder | FluxTextEncoder | CachedTextEncoder:
    """CLIP-L + T5 from the FLUX folder ``cfg.text_encoder``, else the tiny one; frozen, in ``base_dtype``;
    behind the disk cache of plain captions with ``cfg.text_cache``."""
    if cfg.text_encoder:
        encoder = FluxTextEncoder.from_folder(cfg.text_encoder, cfg.text_max_tokens, base_dtype(cfg))
    else:
        encoder = TinyTextEncoder(cfg.joint_attention_dim, cfg.pooled_projection_dim, cfg.text_max_tokens,
                                  seed=cfg.seed, context=cfg.tiny_text_context).to(base_dtype(cfg))
    return CachedTextEncoder(encoder, cfg.text_cache) if cfg.text_cache else encoder


def build_model(cfg: ModelConfig, device: torch.device | str | None = None) -> DreamOTrainModel:
    """Text encoder (frozen) + transformer with LoRA + trainable tables (the only trainable parameters); a random
    transformer is built on ``device`` (a FLUX.1-dev-sized one right on the GPU), the rest on the CPU."""
    text = build_text_encoder(cfg)
    return DreamOTrainModel(load_transformer(cfg, device), text, cfg.embedding_init_std, cfg.trainables_seed)
