"""The wrapper's per-step work on the model's device within one sampling run: no host<->device copy after the
first step, a handful of device ops. The 'meta' device stands in for a GPU (every op on it is dispatched, none computes)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench import comfy_harness as h

META = torch.device("meta")


class OpLog(TorchDispatchMode):
    """Every aten op dispatched, and those whose tensor arguments and results live on different devices."""

    def __init__(self):
        super().__init__()
        self.ops, self.copies = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        devices = {t.device for t in (*args, *(kwargs or {}).values()) if isinstance(t, torch.Tensor)}
        devices |= {t.device for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, torch.Tensor)}
        self.ops.append(str(func))
        if len(devices) > 1:
            self.copies.append(str(func))
        return out


def one_step(model, options, refs_latents, sigma):
    """One positive model call through the wrapper with everything on META; runs our post_input patch."""
    seen = {}

    class Executor:
        class_obj = model.model.diffusion_model

        def __call__(self, *args, **kwargs):
            patch = args[7]["patches"]["post_input"][0]
            out = patch({"img": torch.empty(1, 32, h.HIDDEN, device=META), "img_ids": torch.empty(1, 32, 3, device=META)})
            seen.update(img=out["img"], mask=kwargs.get("attention_mask"))

    x = torch.empty(1, 16, 8, 8, device=META)
    options = {**options, "sigmas": torch.full((1,), sigma, device=META)}
    h.pack("nodes.runtime.wrapper").dreamo_forward_wrapper(Executor(), x, "t", torch.empty(1, 5, h.CTX, device=META),
                                                           None, None, refs_latents, None, options,
                                                           ref_latents_method="uxo")
    return seen


@pytest.mark.parametrize("strength", [1.0, 0.5], ids=["plain-dreamo", "scheduled-strength"])
def test_no_host_device_copy_after_the_first_step(dreamo_model, strength):
    _, m = dreamo_model()
    refs = h.random_refs(h.REF_SHAPES[:2], [1, 2])  # 12 + 4 reference tokens, 4x4 target: 32 tokens (44 with text)
    start = 0.0 if strength == 1.0 else 0.1  # strength 1 over the whole schedule needs no bias at all
    refs = h.run_node("DreamO_ReferenceOptions", references=refs, index=1, strength=strength, start_percent=start)[0]
    m2, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=refs)
    options = h.dreamo_call_options(m2, [pos])  # one sampling run: its DreamORun memoises per run
    latents = [torch.empty(r.latent.shape, device=META) for r in refs.refs]
    logs = []
    for sigma in (0.9, 0.7, 0.5, 0.3):
        with OpLog() as log:
            seen = one_step(m, options, latents, sigma)
        logs.append(log)
        assert seen["img"].device == META and (seen["mask"] is None) == (strength == 1.0)
    assert logs[0].copies  # the first step copies the tables to the device once ...
    for log in logs[1:]:  # ... later steps copy nothing and run a handful of device ops
        assert log.copies == [], log.copies
        assert len(log.ops) <= (8 if strength == 1.0 else 40), log.ops
    print({strength: [len(log.ops) for log in logs]})
