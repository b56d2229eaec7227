"""Per-GPU memory plan of DreamO training on FLUX.1-dev, from the real module shapes on the meta device.

    python -m training.memory_plan                      # prints the table
    python -m training.memory_plan --markdown plan.md   # and writes it

Nothing is downloaded and nothing is allocated: the diffusers ``FluxTransformer2DModel`` is built on the meta
device with the FLUX.1-dev config (``dreamo_core.spec.FLUX_DEV.diffusers_config()``: widths, head width, pooled
width, RoPE axes), given the trainer's own LoRA (``training.model.add_trainables``: rank 128 on the official
targets), and T5-XXL / CLIP-L are built on meta from their configs written out below.

- Weights: parameter counts x bytes: frozen base in bf16 (2 B), trainables (LoRA + task/idx tables +
  placeholder rows) fp32 master weights (4 B) + fp32 gradients (4 B) + AdamW exp_avg / exp_avg_sq (8 B).
  DDP adds one more fp32 copy of the gradients (its all-reduce buckets). FSDP (FSDP2, ``distributed: fsdp``)
  divides frozen weights, trainables, gradients and optimizer state by the GPU count and adds two unsharded
  copies (bf16) of the largest shard unit (the block being computed + the one prefetched). CLIP-L and the VAE
  are not sharded (small).
- Activations: counted, not estimated. One training forward of the meta model (batch 1 per GPU, 512 text tokens,
  a 512² target = 1024 tokens, each 512² reference 1024 tokens, L_route / L_holder captures on
  ``FLUX_DEV.route_layers``, the layers of ``configs/flux_dev.yaml``) runs under
  ``torch.autograd.graph.saved_tensors_hooks``; every tensor autograd saves for backward is recorded once (by
  storage), parameters excluded. Attention is counted as flash attention (what bf16 training on a recent GPU
  runs): a ``TorchFunctionMode`` routes ``scaled_dot_product_attention`` without a mask to
  ``aten._scaled_dot_product_flash_attention``, whose autograd saves q, k, v, out and the log-sum-exp (on meta
  the dispatcher would pick the math kernel, which saves the L x L matrices a GPU never stores). All activations
  are bf16, as under autocast, except where the model itself computes in fp32 (RoPE, norms' statistics);
  autocast's own fp32 ops on GPU (e.g. layer_norm in CUDA's fp32 list) may add some, so measure
  ``max_memory_allocated`` on the first real run (``bench.bench_trainer --size full --device cuda``).
  With gradient checkpointing (diffusers, per block): what is saved outside the blocks + every block's inputs
  (kept for the recompute; shared tensors once) + the largest single block's saved tensors (one block is
  recomputed at a time in backward).
  T5 (placeholder captions only: their rows are trained through T5, so T5's activations are kept; plain
  captions are cached with ``model.text_cache``): T5-XXL's forward over 512 tokens counted the same way, its
  biased attention as the memory-efficient kernel (which saves the position bias, shared by all layers).
- The preference stage (``training.preference``): the same weights (the DreamO files are merged into the frozen
  base), a new LoRA of ``--preference-rank`` (64) and no trainable tables (so T5 runs without gradients: no T5
  activations), one pair per GPU: its two targets in one forward of batch 2 with gradients (counted as above,
  without routing captures), the reference pass (the LoRA off) without gradients, so it saves nothing. FLOPs per
  pair: 2 x (forward + backward) + 2 forwards for the reference + 4 T5 forwards (two captions per pass).
- Not included: the CUDA context and allocator slack (~1-3 GB in practice), the transient working set of one op
  in backward (gradients of the current block's activations), data loading, VAE encoding (no grad, transient).

Throughput columns are FLOPs only (bench/flops.py: the transformer blocks' MACs x 2 FLOP; forward + backward =
2 forwards, since the frozen base's backward computes input gradients only (LoRA's weight gradients are ~1 % of
that), 3 with checkpointing (one more forward); T5: forward + input-gradient backward = 2 forwards, for a
placeholder caption), converted to seconds at an ASSUMED 40 % of an H100's 989 dense bf16 TFLOP/s. They are a
plan, not a measurement.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from bench.flops import FLUX_TEXT_TOKENS, card_bf16_peak, forward_flops, tokens_for
from dreamo_core.conditioning.token_layout import reference_spans
from dreamo_core.spec import FLUX_DEV

from .attention_capture import RoutingCapture
from .config import ModelConfig
from .model import add_trainables

GiB = 2**30
FLUX_DEV_TRANSFORMER = FLUX_DEV.diffusers_config(patch_size=1, in_channels=FLUX_DEV.packed_channels)  # FLUX.1-dev
T5_XXL = dict(vocab_size=32128, d_model=FLUX_DEV.t5_dim, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
              is_encoder_decoder=False, use_cache=False)  # google/t5-v1_1-xxl encoder (FLUX text_encoder_2)
CLIP_L = dict(vocab_size=49408, hidden_size=FLUX_DEV.pooled_dim, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
              projection_dim=FLUX_DEV.pooled_dim)
VAE = dict(in_channels=3, out_channels=3, latent_channels=FLUX_DEV.latent_channels,
           block_out_channels=(128, 256, 512, 512),
           layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           use_quant_conv=False, use_post_quant_conv=False)  # FLUX.1-dev AutoencoderKL
H100_BF16_FLOPS, ASSUMED_MFU = card_bf16_peak("NVIDIA H100 80GB HBM3"), 0.40


class FlashAttentionAccounting(TorchFunctionMode):
    """``scaled_dot_product_attention`` -> the fused kernels a GPU runs, through their meta kernels, so autograd
    saves what they save: unmasked -> ``aten._scaled_dot_product_flash_attention``; with an additive mask
    (T5's position bias) -> ``aten._scaled_dot_product_efficient_attention`` (q, k, v, out, lse, the bias)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
        a = dict(zip(names, args)) | kwargs
        q, k, v, mask = a["query"], a["key"], a["value"], a.get("attn_mask")
        causal, scale = a.get("is_causal", False), a.get("scale")
        if mask is None:
            return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, is_causal=causal, scale=scale)[0]
        if mask.dtype == torch.bool:
            return func(*args, **kwargs)
        bias = mask.to(q.dtype).expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        return torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True, is_causal=causal,
                                                                      scale=scale)[0]


def storage_id(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


@dataclass
class SavedBytes:
    outside: int  # saved outside any block
    per_block: dict[str, int]  # saved inside each block
    block_inputs: int  # bytes of all blocks' tensor inputs (shared storages once)

    @property
    def total(self) -> int:
        return self.outside + sum(self.per_block.values())

    @property
    def checkpointed(self) -> int:
        return self.outside + self.block_inputs + max(self.per_block.values(), default=0)


@contextmanager
def saved_tensor_count(model: nn.Module, blocks: dict[str, nn.Module]) -> Iterator[SavedBytes]:
    """Record the bytes autograd saves while the context is open, attributed to the block running."""
    params = {storage_id(p) for p in model.parameters()}
    seen: set[int] = set()
    inputs_seen: set[int] = set()
    result = SavedBytes(0, dict.fromkeys(blocks, 0), 0)
    active: list[str] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sid = storage_id(t)
        if sid not in params and sid not in seen:
            seen.add(sid)
            n = t.untyped_storage().nbytes()
            if active:
                result.per_block[active[-1]] += n
            else:
                result.outside += n
        return t

    def tensors(x: object) -> Iterator[torch.Tensor]:
        if isinstance(x, torch.Tensor):
            yield x
        elif isinstance(x, (tuple, list)):
            for y in x:
                yield from tensors(y)
        elif isinstance(x, dict):
            for y in x.values():
                yield from tensors(y)

    def enter(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            active.append(name)
            for t in tensors((args, kwargs)):
                if storage_id(t) not in inputs_seen:
                    inputs_seen.add(storage_id(t))
                    result.block_inputs += t.untyped_storage().nbytes()
        return hook

    handles = []
    for name, block in blocks.items():
        handles.append(block.register_forward_pre_hook(enter(name), with_kwargs=True))
        handles.append(block.register_forward_hook(lambda *a: active.pop() and None))  # (None: output unchanged)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield result
    finally:
        for h in handles:
            h.remove()


def meta_transformer(lora_rank: int, **sizes: object) -> nn.Module:
    """FLUX.1-dev on meta with the trainer's LoRA and capture processors; ``sizes`` override its diffusers config
    (e.g. ``num_layers``, ``num_single_layers``: the blocks a benchmark builds)."""
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        transformer = nn.Module.to(FluxTransformer2DModel(**{**FLUX_DEV_TRANSFORMER, **sizes}), torch.bfloat16)
        add_trainables(transformer, ModelConfig(lora_rank=lora_rank))
    return transformer


def transformer_activations(transformer: nn.Module, n_refs: int, image: int, ref: int, batch: int = 1,
                            routing: bool = True, layers: frozenset[str] = frozenset(FLUX_DEV.route_layers),
                            text_tokens: int = FLUX_TEXT_TOKENS) -> SavedBytes:
    """Saved-for-backward bytes of one DreamO training forward of ``batch`` rows, all compute in bf16, with
    ``text_tokens`` text tokens. ``routing``: the L_route / L_holder captures on ``layers`` (the config's by default),
    and the text embeddings need a gradient (the placeholder rows train); off for the preference stage (no routing
    loss, tables frozen)."""
    trainables = {n: p for n, p in transformer.named_parameters() if p.requires_grad}
    fp32 = {n: p.data for n, p in trainables.items()}
    for p in trainables.values():  # autocast computes LoRA in bf16 too
        p.data = p.data.to(torch.bfloat16)
    n, r = tokens_for(image, image), tokens_for(ref, ref)
    L, T, c = n + n_refs * r, text_tokens, transformer.config
    blocks = {f"transformer_blocks.{i}": b for i, b in enumerate(transformer.transformer_blocks)}
    blocks |= {f"single_transformer_blocks.{i}": b for i, b in enumerate(transformer.single_transformer_blocks)}
    with torch.device("meta"):
        hidden = torch.empty(batch, L, c.in_channels, dtype=torch.bfloat16)
        text = torch.empty(batch, T, c.joint_attention_dim, dtype=torch.bfloat16, requires_grad=routing)  # rows' grad
        pooled = torch.empty(batch, c.pooled_projection_dim, dtype=torch.bfloat16)
        t, g = torch.empty(batch), torch.empty(batch)
        img_ids, txt_ids = torch.empty(L, 3), torch.empty(T, 3)
        pos = torch.zeros(batch, n_refs, dtype=torch.long)
    capture = RoutingCapture(T, n, reference_spans(n, [r] * n_refs), layers, "softmax",
                             pos if n_refs > 1 else None) if routing else None
    with FlashAttentionAccounting(), saved_tensor_count(transformer, blocks) as saved:
        out = transformer(hidden_states=hidden, timestep=t, guidance=g, pooled_projections=pooled,
                          encoder_hidden_states=text, img_ids=img_ids, txt_ids=txt_ids,
                          joint_attention_kwargs={"dreamo_capture": capture} if routing else None,
                          return_dict=False)[0]
        loss = out[:, :n].float().square().mean()
        if routing:
            loss = loss + capture.stacked_route().float().square().mean()
    del loss
    for name, p in trainables.items():
        p.data = fp32[name]
    return saved


def t5_activations(t5: nn.Module) -> SavedBytes:
    """Saved-for-backward bytes of T5's forward over 512 tokens whose input embeddings need a gradient."""
    with torch.device("meta"):
        embeds = torch.empty(1, FLUX_TEXT_TOKENS, T5_XXL["d_model"], dtype=torch.bfloat16, requires_grad=True)
    blocks = {f"block.{i}": b for i, b in enumerate(t5.encoder.block)}
    with FlashAttentionAccounting(), saved_tensor_count(t5, blocks) as saved:
        t5(inputs_embeds=embeds)[0].float().mean()
    return saved


def numel(module: nn.Module, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)


@dataclass
class Plan:
    stage: str  # "dreamo" (training.train) or "preference" (training.preference)
    refs: int
    checkpointing: bool
    strategy: str
    gpus: int
    weights: float  # GiB per GPU
    training_state: float
    dit_activations: float
    t5_activations: float

    @property
    def total(self) -> float:
        return self.weights + self.training_state + self.dit_activations + self.t5_activations


def stage_plans(stage: str, saved: dict[int, SavedBytes], t5_saved: int, trainable: int, frozen_sharded: int,
                unsharded: int, largest_unit: int, gpus: int) -> list[Plan]:
    """DDP and FSDP plans per reference count, checkpointing off and on, from the counted saved bytes."""
    plans = []
    for n_refs, counted in saved.items():
        for ckpt in (False, True):
            act = (counted.checkpointed if ckpt else counted.total) / GiB
            t5_act = t5_saved / GiB  # the trainer checkpoints the transformer's blocks, not T5's
            plans.append(Plan(stage, n_refs, ckpt, "DDP", gpus, (frozen_sharded + unsharded) / GiB,
                              trainable * (4 + 4 + 8 + 4) / GiB, act, t5_act))
            plans.append(Plan(stage, n_refs, ckpt, "FSDP", gpus,
                              (frozen_sharded / gpus + unsharded + 2 * 2 * largest_unit) / GiB,
                              trainable * (4 + 4 + 8) / gpus / GiB, act, t5_act))
    return plans


def build_plans(lora_rank: int = 128, image: int = 512, ref: int = 512, gpus: int = 8,
                preference_rank: int = 64) -> tuple[list[Plan], dict]:
    """DreamO training (LoRA ``lora_rank`` + tables, routing captures, placeholder captions through T5) and the
    preference stage (a new LoRA of ``preference_rank`` on the merged base, tables frozen: no T5 gradient; one
    pair per GPU = 2 targets through one forward with gradients; the reference pass runs without gradients and
    saves nothing) for 1-3 references."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    transformer = meta_transformer(lora_rank)
    with torch.device("meta"):
        t5 = T5EncoderModel(T5Config(**T5_XXL)).to(torch.bfloat16).requires_grad_(False)
        clip = CLIPTextModel(CLIPTextConfig(**CLIP_L)).requires_grad_(False)
        vae = AutoencoderKL(**VAE)
    d = FLUX_DEV.hidden_size
    tables = FLUX_DEV.num_task_rows * d + FLUX_DEV.num_idx_rows * d + FLUX_DEV.t5_placeholder_rows * FLUX_DEV.t5_dim
    counts = {"transformer (frozen)": numel(transformer, False), "LoRA": numel(transformer, True),
              "tables": tables, "T5-XXL encoder": numel(t5), "CLIP-L": numel(clip), "VAE": numel(vae)}
    units = [*transformer.transformer_blocks, *transformer.single_transformer_blocks, *t5.encoder.block]
    largest_unit = max(numel(u) for u in units)
    frozen_sharded = 2 * (counts["transformer (frozen)"] + counts["T5-XXL encoder"])
    unsharded = 2 * (counts["CLIP-L"] + counts["VAE"])
    common = (frozen_sharded, unsharded, largest_unit, gpus)
    refs = (1, 2, 3)
    plans = stage_plans("dreamo", {n: transformer_activations(transformer, n, image, ref) for n in refs},
                        t5_activations(t5).total, counts["LoRA"] + tables, *common)
    pref = meta_transformer(preference_rank)
    counts["preference LoRA"] = numel(pref, True)
    plans += stage_plans("preference", {n: transformer_activations(pref, n, image, ref, batch=2, routing=False)
                                        for n in refs}, 0, counts["preference LoRA"], *common)
    counts["largest shard unit"] = largest_unit
    return plans, counts


@dataclass
class SingleGpuPlan:
    """What one training step on one GPU holds (GiB), transformer only (no T5 / CLIP / VAE: what
    ``bench.bench_trainer`` builds): frozen bf16 weights, the trainables' fp32 weights + gradients + AdamW state,
    the DiT's saved activations (batch 1)."""

    weights: float
    training_state: float
    activations: float
    frozen_params: int
    trainable_params: int

    @property
    def total(self) -> float:
        return self.weights + self.training_state + self.activations


def single_gpu_plan(sizes: dict, n_refs: int, image: int, ref: int, layers: frozenset[str], text_tokens: int,
                    lora_rank: int = 128, checkpointing: bool = True) -> SingleGpuPlan:
    """The plan of one batch-1 step on one GPU (no DDP bucket copy) of the FLUX transformer of diffusers ``sizes``
    (overrides of FLUX.1-dev's config), with the trainer's LoRA and its tables (task, idx, placeholder rows)."""
    transformer = meta_transformer(lora_rank, **sizes)
    c = transformer.config
    d = c.num_attention_heads * c.attention_head_dim
    tables = FLUX_DEV.num_task_rows * d + FLUX_DEV.num_idx_rows * d + FLUX_DEV.t5_placeholder_rows * c.joint_attention_dim
    trainable = numel(transformer, True) + tables
    saved = transformer_activations(transformer, n_refs, image, ref, layers=layers, text_tokens=text_tokens)
    return SingleGpuPlan(2 * numel(transformer, False) / GiB, trainable * (4 + 4 + 8) / GiB,
                         (saved.checkpointed if checkpointing else saved.total) / GiB, numel(transformer, False), trainable)


def step_seconds(stage: str, n_refs: int, ckpt: bool, image: int, ref: int) -> tuple[float, float]:
    """(TFLOP per GPU and step, seconds per step at the assumed MFU). dreamo: one sample forward + backward (3
    forwards with checkpointing) + T5 forward and input-gradient backward (a placeholder caption). preference: one
    pair = 2 samples forward + backward, the reference pass (2 samples, 1 forward each, no grad) and T5 forward
    only, for the 2 captions of each pass."""
    image_tokens = tokens_for(image, image) + n_refs * tokens_for(ref, ref)
    fwd = 2 * forward_flops(image_tokens).total
    t5 = 2 * T5_XXL["num_layers"] * FLUX_TEXT_TOKENS * (4 * T5_XXL["d_model"] ** 2
                                                         + 3 * T5_XXL["d_model"] * T5_XXL["d_ff"])
    passes = 3 if ckpt else 2
    flops = fwd * passes + t5 * 2 if stage == "dreamo" else 2 * fwd * passes + 2 * fwd + 4 * t5
    return flops / 1e12, flops / (H100_BF16_FLOPS * ASSUMED_MFU)


def fits(total: float, capacity: float) -> str:
    return "yes" if total <= 0.9 * capacity else "no"


def verdict(p: Plan) -> str:
    """Which cards it fits: DreamO training's DDP on 80 GB, its FSDP on 24 / 40 / 48 GB; the preference stage's
    both on 24-80 GB."""
    cards = (80,) if p.stage == "dreamo" and p.strategy == "DDP" else (24, 40, 48) if p.stage == "dreamo" else (
        24, 40, 48, 80)
    return ", ".join(f"{c} GB: {fits(p.total, c)}" for c in cards)


HEADERS = {
    "dreamo": "Per GPU, batch 1 per GPU, {image}² target + N {ref}² references, 512 text tokens, LoRA rank 128, "
              "{gpus} GPUs; GiB. Fits: total <= 90 % of the card.",
    "preference": "Preference stage (`training.preference`): per GPU 1 pair (2 {image}² targets through one forward) "
                  "+ N {ref}² references, 512 text tokens, a new LoRA of rank {rank} (tables frozen: no T5 "
                  "activations), the reference pass without gradients (nothing saved; its one-block working set is "
                  "transient), {gpus} GPUs; GiB. Fits: total <= 90 % of the card.",
}


def markdown(plans: list[Plan], counts: dict, image: int, ref: int) -> str:
    lines = ["Parameters (meta-device modules): " + ", ".join(f"{k} {v / 1e9:.3f} B" if v > 1e8 else f"{k} {v / 1e6:.1f} M"
                                                             for k, v in counts.items())]
    rank = round(128 * counts.get("preference LoRA", 0) / counts["LoRA"])
    for stage in ("dreamo", "preference"):
        rows = [p for p in plans if p.stage == stage]
        if not rows:
            continue
        lines += ["", HEADERS[stage].format(image=image, ref=ref, gpus=rows[0].gpus, rank=rank), "",
                  "| refs | strategy | checkpointing | weights | LoRA state | DiT activations | T5 activations | total | "
                  "fits | TFLOP/step | s/step @40% H100 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for p in rows:
            tflop, secs = step_seconds(p.stage, p.refs, p.checkpointing, image, ref)
            lines.append(f"| {p.refs} | {p.strategy} x{p.gpus} | {'on' if p.checkpointing else 'off'} | "
                         f"{p.weights:.1f} | {p.training_state:.2f} | {p.dit_activations:.1f} | "
                         f"{p.t5_activations:.1f} | {p.total:.1f} | {verdict(p)} | {tflop:.0f} | {secs:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--markdown", type=Path, help="also write the table to this file")
    p.add_argument("--image", type=int, default=512)
    p.add_argument("--ref", type=int, default=512)
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--preference-rank", type=int, default=64, help="rank of the preference stage's new LoRA")
    a = p.parse_args(argv)
    plans, counts = build_plans(image=a.image, ref=a.ref, gpus=a.gpus, preference_rank=a.preference_rank)
    text = markdown(plans, counts, a.image, a.ref)
    print(text)
    if a.markdown:
        a.markdown.write_text(text)


if __name__ == "__main__":
    main()
