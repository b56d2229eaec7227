"""The loss terms of one step (paper Sec. 3.3: L = λ_diff·L_diff + λ_route·L_route + λ_holder·L_holder) and the
checks that stop every process together, before the optimizer step, when a term or the gradient norm is not
finite."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dreamo_core.routing.losses import flow_matching_loss, noisy_latents, placeholder_loss, routing_loss

from .batch import Batch
from .config import TrainConfig

if TYPE_CHECKING:
    from accelerate import Accelerator

LOSS_TERMS = ("loss", "diff", "route", "holder")


class NonFiniteLossError(FloatingPointError):
    """A loss term or the gradient norm is not finite; raised on every process, before the optimizer step."""


def compute_losses(model: torch.nn.Module, batch: Batch, cfg: TrainConfig, noise: torch.Tensor, t: torch.Tensor,
                   layers: frozenset[str]) -> dict[str, torch.Tensor]:
    """{"loss", "diff", "route", "holder"} for one batch (route/holder are 0 when their weight is 0)."""
    lc = cfg.loss
    use_route, use_holder = lc.route > 0, lc.holder > 0 and len(batch.refs) > 1 and bool(batch.holder.any())
    z_t = noisy_latents(batch.latents, noise, t)
    guidance = torch.full_like(t, cfg.guidance)
    pred, cap = model(z_t, batch.grid, batch.refs, t, guidance, batch.captions, batch.ref_keep,
                      capture_layers=layers if (use_route or use_holder) else frozenset(),
                      route_mode=lc.route_mode, with_placeholders=use_holder)
    zero = pred.sum() * 0.0
    out = {"diff": flow_matching_loss(pred, batch.latents, noise), "route": zero, "holder": zero}
    if use_route:
        out["route"] = routing_loss(cap.stacked_route(), batch.masks, lc.route_mode)
    if use_holder:
        n_refs, b = batch.masks.shape[:2]
        slots = torch.arange(n_refs, device=pred.device)[:, None].expand(n_refs, b)
        out["holder"] = placeholder_loss(cap.stacked_holder(), slots, batch.holder[None].expand(n_refs, b))
    out["loss"] = lc.diff * out["diff"] + lc.route * out["route"] + lc.holder * out["holder"]
    return out


def reduced_losses(acc: Accelerator, losses: dict[str, torch.Tensor], done: int, stage: str,
                   terms: tuple[str, ...] = LOSS_TERMS) -> dict[str, float]:
    """Each loss term's mean over the processes (one all-reduce of values and non-finite flags). When a term is
    not finite on any process, every process raises the same NonFiniteLossError (call it before backward)."""
    values = torch.stack([losses[k].detach().float().reshape(()) for k in terms])
    bad = ~torch.isfinite(values)
    sums, counts = acc.reduce(torch.stack([values.masked_fill(bad, 0.0), bad.float()]), reduction="sum").tolist()
    world = acc.num_processes
    procs = "process" if world == 1 else "processes"
    named = [f"{k} (on {int(n)} of {world} {procs})" for k, n in zip(terms, counts) if n]
    if named:
        raise NonFiniteLossError(f"step {done} (stage {stage!r}): non-finite loss term(s): {', '.join(named)}; "
                                 f"stopped before the optimizer step (parameters are those after step {done - 1}); "
                                 "lower the stage lr or check the data")
    return {k: v / world for k, v in zip(terms, sums)}


def check_grad_norm(norm: torch.Tensor, done: int, stage: str) -> None:
    """NonFiniteLossError for a non-finite gradient norm (after DDP's all-reduce: the same on every process)."""
    if not bool(torch.isfinite(norm)):
        raise NonFiniteLossError(f"step {done} (stage {stage!r}): the gradient norm is {float(norm)} although the "
                                 f"loss terms are finite; stopped before the optimizer step (parameters are those "
                                 f"after step {done - 1}); lower the stage lr or check the data")
