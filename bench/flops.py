"""FLOPs floor of a FLUX forward from token counts: linear layers scale with tokens, attention with tokens².

Counts multiply-accumulates of the transformer blocks (embedders, modulation and the final layer are per-sample
or tiny and left out). Per block and token, both stream types do 12·D² MACs of projections + MLP
(double: qkv 3D², out D², MLP 8D² per stream; single: linear1 7D², linear2 5D²), and attention does
2·N²·D MACs (QKᵀ and AV) over the joint sequence of N = text + image tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from dreamo_core.spec import FLUX_DEV, DreamOSpec

FLUX_TEXT_TOKENS = 512
# dense (no sparsity) bf16 tensor-core peak FLOP/s by card, from NVIDIA's data sheets; matched in order against
# torch.cuda.get_device_name() (e.g. "NVIDIA H100 80GB HBM3"): the first name contained in it wins
BF16_DENSE_PEAK = (("H200 NVL", 835e12), ("H200", 989e12), ("H100 NVL", 835e12), ("H100 PCIe", 756e12),
                   ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12))


@dataclass(frozen=True)
class ForwardMacs:
    linear: float  # MACs of the projections / MLPs
    attention: float  # MACs of QK^T and AV

    @property
    def total(self) -> float:
        return self.linear + self.attention


def forward_flops(image_tokens: int, text_tokens: int = FLUX_TEXT_TOKENS, spec: DreamOSpec = FLUX_DEV) -> ForwardMacs:
    """MACs of one transformer forward over ``text_tokens + image_tokens`` tokens."""
    n, d = text_tokens + image_tokens, spec.hidden_size
    blocks = spec.num_double_blocks + spec.num_single_blocks
    per_token = 4 * d * d + 2 * d * spec.mlp_hidden  # 12·D² at mlp_ratio 4
    embed = text_tokens * spec.t5_dim * d + image_tokens * 2 * spec.packed_channels * d
    return ForwardMacs(linear=blocks * per_token * n + embed, attention=blocks * 2 * n * n * d)


def tokens_for(width: int, height: int, spec: DreamOSpec = FLUX_DEV) -> int:
    """Image tokens of a width x height picture (``spec.token_pixels``: 16 px per token side)."""
    return (width // spec.token_pixels) * (height // spec.token_pixels)


def floor_ratio(target_tokens: int, ref_tokens: list[int], text_tokens: int = FLUX_TEXT_TOKENS,
                spec: DreamOSpec = FLUX_DEV) -> float:
    """FLOPs of the DreamO forward (target + references) over the plain forward (target only)."""
    plain = forward_flops(target_tokens, text_tokens, spec).total
    return forward_flops(target_tokens + sum(ref_tokens), text_tokens, spec).total / plain


def excess_percent(measured_ratio: float, floor: float) -> float:
    """How far a measured cost ratio exceeds the FLOPs floor, in percent."""
    return (measured_ratio / floor - 1.0) * 100.0


def card_bf16_peak(device_name: str) -> float | None:
    """The dense bf16 peak FLOP/s of a card by its CUDA device name (``BF16_DENSE_PEAK``), None if unknown."""
    return next((flops for name, flops in BF16_DENSE_PEAK if name.lower() in device_name.lower()), None)


def peak_share(macs: float, seconds: float, peak_flops: float | None) -> float | None:
    """The share of the card's peak that ``macs`` multiply-accumulates (2 FLOP each) in ``seconds`` achieve."""
    return None if peak_flops is None or seconds <= 0 else 2 * macs / seconds / peak_flops
