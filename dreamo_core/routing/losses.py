"""DreamO training losses as pure functions (paper arXiv 2504.16915, Sec. 3.3; spec §7).

L = λ_diff·L_diff + λ_route·L_route + λ_holder·L_holder.

Shapes: B batch, N noisy-target tokens, Lr tokens of one reference, H heads, d head dim, P placeholder tokens.

Routing response (``reference_response``): the paper's Eq. 2 prints M = Q_cond,i K_img^T / sqrt(d) averaged
over the reference tokens, with no softmax, and regresses it onto the 0/1 subject mask. Raw logits have no
fixed scale (RMS-normed q/k with learned gains, RoPE) and their optimum "logit = mask" says nothing about
where attention mass actually goes after the softmax. Our default ``mode="softmax"`` therefore uses the
attention the reference tokens really pay to the noisy image: softmax over the N target keys, averaged over
reference tokens and heads, times N (a density: 1 everywhere for uniform attention). Its target is the mask
normalised the same way (N·m/Σm), so the loss is zero exactly when all the reference's image attention falls
uniformly on its subject. ``mode="logits"`` reproduces the paper literally (raw logits vs the 0/1 mask).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ROUTE_MODES = ("softmax", "logits")


def noisy_latents(z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rectified-flow interpolation z_t = (1 - t)·z0 + t·eps. z0, noise: (B, ...); t: (B,) in [0, 1]."""
    t = t.reshape(-1, *([1] * (z0.ndim - 1))).to(z0.dtype)
    return (1.0 - t) * z0 + t * noise


def flow_matching_loss(pred: torch.Tensor, z0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """FLUX velocity regression: mean((pred - (eps - z0))**2). All (B, N, C) -> scalar."""
    return F.mse_loss(pred.float(), (noise - z0).float())


def reference_response(q_ref: torch.Tensor, k_img: torch.Tensor, mode: str = "softmax") -> torch.Tensor:
    """Response of one reference over the noisy image. q_ref: (B, Lr, H, d); k_img: (B, N, H, d) -> (B, N).

    softmax: N · mean_{heads, ref tokens} softmax_N(q k^T / sqrt(d)); logits: mean_{heads, ref tokens} q k^T / sqrt(d).
    """
    if mode not in ROUTE_MODES:
        raise ValueError(f"reference_response: mode must be one of {ROUTE_MODES}, got {mode!r}")
    d, n = q_ref.shape[-1], k_img.shape[1]
    if mode == "logits":  # mean over ref tokens commutes with the dot product: use the mean query
        q_mean = q_ref.float().mean(dim=1)  # (B, H, d)
        return torch.einsum("bhd,bnhd->bn", q_mean, k_img.float()) / (q_ref.shape[2] * math.sqrt(d))
    logits = torch.einsum("brhd,bnhd->bhrn", q_ref.float(), k_img.float()) / math.sqrt(d)  # (B, H, Lr, N)
    return logits.softmax(dim=-1).mean(dim=(1, 2)) * n


def span_means(spans: list[tuple[int, int]], length: int, device: torch.device) -> torch.Tensor:
    """(n_spans, length) matrix whose row k averages positions [s_k, e_k): row @ x is the mean over span k."""
    a = torch.zeros(len(spans), length, device=device)
    for k, (s, e) in enumerate(spans):
        if not 0 <= s < e <= length:
            raise ValueError(f"span_means: span {(s, e)} is empty or outside 0..{length}")
        a[k, s:e] = 1.0 / (e - s)
    return a


def span_mean_queries(q_refs: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """Mean query of each reference, float32. q_refs: (B, R, H, d), reference k at [s_k, e_k) -> (B, n_refs, H, d)."""
    return torch.einsum("kr,brhd->bkhd", span_means(spans, q_refs.shape[1], q_refs.device), q_refs.float())


def reference_responses(
    q_refs: torch.Tensor, k_img: torch.Tensor, spans: list[tuple[int, int]], mode: str = "softmax"
) -> torch.Tensor:
    """``reference_response`` of every reference at once. q_refs: (B, R, H, d) the references' tokens side by
    side, reference k at [s_k, e_k) of ``spans``; k_img: (B, N, H, d) -> (n_refs, B, N). One batched product
    instead of one per reference."""
    if mode not in ROUTE_MODES:
        raise ValueError(f"reference_responses: mode must be one of {ROUTE_MODES}, got {mode!r}")
    d, n, h = q_refs.shape[-1], k_img.shape[1], q_refs.shape[2]
    if mode == "logits":
        return torch.einsum("bkhd,bnhd->kbn", span_mean_queries(q_refs, spans), k_img.float()) / (h * math.sqrt(d))
    avg = span_means(spans, q_refs.shape[1], q_refs.device)  # (n_refs, R)
    logits = torch.einsum("brhd,bnhd->bhrn", q_refs.float(), k_img.float()) / math.sqrt(d)  # (B, H, R, N)
    return torch.einsum("kr,brn->kbn", avg, logits.softmax(dim=-1).mean(dim=1)) * n


def routing_target(mask: torch.Tensor, mode: str = "softmax") -> torch.Tensor:
    """Subject mask on the token grid (B, N) in [0, 1] -> the response the loss asks for (B, N).
    softmax: N·m/Σm (all-zero masks stay zero; weight them out); logits: the mask itself."""
    if mode not in ROUTE_MODES:
        raise ValueError(f"routing_target: mode must be one of {ROUTE_MODES}, got {mode!r}")
    if mode == "logits":
        return mask.float()
    total = mask.float().sum(dim=-1, keepdim=True)
    return mask.float() * mask.shape[-1] / total.clamp_min(1e-8)


def routing_loss(
    responses: torch.Tensor, masks: torch.Tensor, mode: str = "softmax", weights: torch.Tensor | None = None
) -> torch.Tensor:
    """L_route = 1/(n_c n_l) Σ_layers Σ_conditions mean_tokens (M - M_target)², averaged over the batch.

    responses: (n_layers, n_refs, B, N) from ``reference_response``; masks: (n_refs, B, N) token-grid masks;
    weights: (n_refs, B), 0 drops a condition (default: empty masks are dropped in softmax mode).
    The result is Σ w·loss / (n_refs·B): a dropped pair counts as zero, so per-process means of equal
    shards average to the global mean (DDP). Returns a scalar.
    """
    if responses.ndim != 4 or masks.shape != responses.shape[1:]:
        raise ValueError(f"routing_loss: responses (layers, refs, B, N) {tuple(responses.shape)} vs masks {tuple(masks.shape)}")
    target = routing_target(masks, mode)  # (n_refs, B, N)
    per = ((responses.float() - target[None]) ** 2).mean(dim=-1).mean(dim=0)  # (n_refs, B)
    if weights is None:
        weights = (masks.sum(dim=-1) > 0).float() if mode == "softmax" else torch.ones_like(per)
    return (per * weights).sum() / per.numel()


def placeholder_logits(q_ref: torch.Tensor, k_text: torch.Tensor) -> torch.Tensor:
    """Averaged attention logits of one reference to the placeholder text tokens.
    q_ref: (B, Lr, H, d); k_text: (B, P, H, d) -> (B, P) = mean_{heads, ref tokens} q k^T / sqrt(d)."""
    q_mean = q_ref.float().mean(dim=1)  # (B, H, d)
    return torch.einsum("bhd,bphd->bp", q_mean, k_text.float()) / (q_ref.shape[2] * math.sqrt(q_ref.shape[-1]))


def placeholder_logits_per_reference(
    q_refs: torch.Tensor, k_text: torch.Tensor, spans: list[tuple[int, int]]
) -> torch.Tensor:
    """``placeholder_logits`` of every reference at once. q_refs: (B, R, H, d) with reference k at
    [s_k, e_k) of ``spans``; k_text: (B, P, H, d) -> (n_refs, B, P)."""
    return torch.einsum("bkhd,bphd->kbp", span_mean_queries(q_refs, spans), k_text.float()) / (q_refs.shape[2] * math.sqrt(q_refs.shape[-1]))


def placeholder_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_holder = 1/n_c Σ_i ||softmax_P(logits_i) - B_i||², averaged over layers and the batch.

    logits: (n_layers, n_refs, B, P); targets: (n_refs, B) long, the slot of reference i's own placeholder in P;
    weights: (n_refs, B) (0 where the caption has no placeholders: L_holder is dropped there).
    Returns Σ w·loss / (n_refs·B), a scalar (see ``routing_loss`` for why not / Σ w).
    """
    if logits.ndim != 4 or targets.shape != logits.shape[1:3]:
        raise ValueError(f"placeholder_loss: logits (layers, refs, B, P) {tuple(logits.shape)} vs targets {tuple(targets.shape)}")
    one_hot = F.one_hot(targets.long(), logits.shape[-1]).float()  # (n_refs, B, P)
    per = ((logits.float().softmax(dim=-1) - one_hot[None]) ** 2).sum(dim=-1).mean(dim=0)  # (n_refs, B)
    if weights is None:
        weights = torch.ones_like(per)
    return (per * weights).sum() / per.numel()
