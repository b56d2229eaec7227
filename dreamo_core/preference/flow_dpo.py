"""Flow-DPO, optionally localized (our LDPO), as pure functions.

Diffusion-DPO (Wallace et al., arXiv 2311.12908; the diffusers ``research_projects/diffusion_dpo`` recipe) moved to
rectified flow. A pair (preferred w, rejected l) shares the noise ε and the time t: x_t = (1 − t)·x0 + t·ε, target
v = ε − x0. With per-token errors of the trained model θ and of the reference model (the same network with the new
adapter switched off), per pair::

    e_w = mean_M(‖v_θ(x_t^w) − v^w‖² − ‖v_ref(x_t^w) − v^w‖²)        (e_l likewise)
    margin = −β/2 · (e_w − e_l)                                         the implicit reward margin r_w − r_l
    L_dpo = −log σ(margin)

``mean_M`` is the mean over the latent elements: over all tokens and channels, or, localized, the token-weighted mean
inside a region M (B, N) ∈ [0, 1] (channels averaged per token). At the start (θ = reference) every e is 0, so
L_dpo = log 2 and the margin 0. The reward accuracy is the share of pairs with margin > 0 (the model prefers the
preferred target more than the reference model does), a tie counting one half (as diffusers), so it is 0.5 at the
start. The optional anchor is plain flow matching of the preferred target outside M,
``Σ (1 − M)·‖v_θ − v^w‖² / Σ (1 − M)`` per pair (0 for a pair whose region covers everything; 0 unlocalized), so
the background has a target of its own: L = L_dpo + anchor_weight · anchor.

**LDPO, ours.** DreamFuse (Huang et al., arXiv 2504.08291) states that it refines its fusion model with Localized
Direct Preference Optimization guided by human feedback, to enhance background consistency and foreground harmony,
computing the preference inside a localized foreground region M, the foreground box enlarged by a dilation factor α.
Its LDPO code is unpublished (its authors list "release the LDPO code" as not done), so everything beyond that
sentence is our formulation: the region enters as token weights of the error difference, the flow-matching form
above, and the outside anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class FlowDPOTerms:
    """Scalars: ``loss`` (L_dpo + anchor_weight·anchor, back-propagated), ``dpo``, ``margin`` (mean implicit reward
    margin), ``accuracy`` (reward accuracy), ``anchor``; ``margins`` (B,) per pair. All but loss/dpo/anchor detached."""

    loss: torch.Tensor
    dpo: torch.Tensor
    margin: torch.Tensor
    accuracy: torch.Tensor
    anchor: torch.Tensor
    margins: torch.Tensor


def token_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared velocity error per token, averaged over the channels, in float32. pred, target (B, N, C) -> (B, N)."""
    return (pred.float() - target.float()).square().mean(dim=-1)


def region_mean(values: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
    """Per-row mean of ``values`` (B, N): plain without a region, else weighted by ``region`` (B, N) in [0, 1]
    (a row whose region is empty gives 0). -> (B,)."""
    if region is None:
        return values.mean(dim=-1)
    w = region.to(values.dtype)
    return (values * w).sum(dim=-1) / w.sum(dim=-1).clamp_min(1e-12)


def outside_anchor(err_w: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
    """Flow matching of the preferred target outside the region, mean over pairs (a pair without outside counts 0;
    no region: 0). err_w (B, N) -> scalar."""
    if region is None:
        return err_w.sum() * 0.0
    outside = 1.0 - region.to(err_w.dtype)
    return ((err_w * outside).sum(dim=-1) / outside.sum(dim=-1).clamp_min(1e-12)).mean()


def flow_dpo_loss(err_w: torch.Tensor, err_l: torch.Tensor, ref_err_w: torch.Tensor, ref_err_l: torch.Tensor,
                  beta: float, region: torch.Tensor | None = None, anchor_weight: float = 0.0) -> FlowDPOTerms:
    """The module docstring's loss. err_*: the trained model's per-token errors (B, N) (``token_errors``);
    ref_err_*: the reference model's (detached here); region: (B, N) token weights M, None = unlocalized."""
    if not beta > 0:
        raise ValueError(f"flow_dpo_loss: beta must be > 0, got {beta}")
    shapes = {tuple(x.shape) for x in (err_w, err_l, ref_err_w, ref_err_l)}
    if len(shapes) != 1 or err_w.ndim != 2 or (region is not None and tuple(region.shape) != tuple(err_w.shape)):
        raise ValueError(f"flow_dpo_loss: errors must all be (B, N) and the region too, got {sorted(shapes)} and "
                         f"{None if region is None else tuple(region.shape)}")
    e_w = region_mean(err_w - ref_err_w.detach(), region)
    e_l = region_mean(err_l - ref_err_l.detach(), region)
    margins = -0.5 * beta * (e_w - e_l)
    dpo = F.softplus(-margins).mean()  # −log σ(margin)
    anchor = outside_anchor(err_w, region)
    m = margins.detach()
    accuracy = ((m > 0).float() + 0.5 * (m == 0).float()).mean()
    return FlowDPOTerms(dpo + anchor_weight * anchor, dpo, m.mean(), accuracy, anchor, m)
