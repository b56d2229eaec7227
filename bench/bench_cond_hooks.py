"""What a ComfyUI conditioning hook (``comfy.hooks``) would cost DreamO, measured on the ComfyUI at $COMFYUI_PATH.

A hook group on Apply DreamO Conditioning's output is the one way ComfyUI offers to run DreamO code on ANY model
that samples that conditioning (a refiner after SplitSigmas, ModelMergeSimple with the plain model first). This
measures, on a tiny FLUX with ComfyUI's real KSampler path (euler, 4 steps), with and without a
``TransformerOptionsHook`` on the DreamO prompts:

- model calls and their batch sizes (a hooked cond never batches with an unhooked one);
- ``ModelPatcher.patch_hooks`` calls (hook-group switches between batches) and wall time per run;
- the output's max |difference| to the run without the hook (batching changes the float rounding);
- whether a hook can carry DreamO onto a model without DreamO (the gap): the plain model + a hook bound to
  DreamO's tables against the DreamO model;
- ComfyUI >= 0.16 with dynamic VRAM (the default on NVIDIA): ``CFGGuider.set_conds`` replaces a dynamic model
  by a non-dynamic delegate as soon as any cond carries hooks, built by calling the model's loader again
  (``cached_patcher_init``); counted here with a stand-in loader (this machine has no GPU, so the dynamic
  patcher is simulated by its ``is_dynamic``).

    COMFYUI_PATH=/path/to/ComfyUI python -m bench.bench_cond_hooks
"""

from __future__ import annotations

import os
import statistics
import time
from types import SimpleNamespace

import torch

from bench import comfy_harness as h

STEPS, ROUNDS = 4, 15


def ksample(model, positive, negative, cfg: float) -> torch.Tensor:
    import comfy.sample

    latent = torch.zeros(1, 16, 32, 32)
    noise = comfy.sample.prepare_noise(latent, 7)
    return comfy.sample.sample(model, noise, STEPS, cfg, "euler", "simple", positive, negative, latent,
                               disable_pbar=True, seed=7)


def hooked(conditioning: list, wrappers: dict, decline=None) -> list:
    """``conditioning`` with a TransformerOptionsHook adding ``wrappers`` ({type: {key: [fn]}}) to whichever model
    samples it; ``decline(model)`` True makes the hook refuse to register (it is then dropped from the conds)."""
    import comfy.hooks

    hook = comfy.hooks.TransformerOptionsHook({"wrappers": wrappers}, comfy.hooks.EnumHookScope.AllConditioning)
    if decline is not None:
        hook.custom_should_register = lambda hk, model, *rest: not decline(model)
    group = comfy.hooks.HookGroup()
    group.add(hook)
    return comfy.hooks.set_hooks_for_conditioning(conditioning, group)


def unhooked(conditioning: list) -> list:
    """``conditioning`` without any hook (Apply's output carries DreamO's guard; the baseline has none)."""
    return [[c, {k: v for k, v in d.items() if k != "hooks"}] for c, d in conditioning]


def passthrough(executor, *args, **kwargs):
    return executor(*args, **kwargs)


class Counted:
    """Batch sizes of every diffusion forward (a pre-hook on ``pe_embedder``) and ``patch_hooks`` calls."""

    def __init__(self, model):
        import comfy.model_patcher

        self.model, self.batches, self.switches = model, [], 0
        self.cls = comfy.model_patcher.ModelPatcher
        self.original = self.cls.patch_hooks

    def __enter__(self):
        counted = self

        def patch_hooks(patcher, *args, **kwargs):
            counted.switches += 1
            return counted.original(patcher, *args, **kwargs)

        self.cls.patch_hooks = patch_hooks
        module = self.model.model.diffusion_model.pe_embedder
        self.handle = module.register_forward_pre_hook(lambda _m, args: self.batches.append(args[0].shape[0]))
        return self

    def __exit__(self, *exc):
        self.cls.patch_hooks = self.original
        self.handle.remove()


def counted_run(model, positive, negative, cfg: float) -> tuple[torch.Tensor, list[int], int]:
    """(output, batch sizes of the run's model calls, patch_hooks calls of the run)."""
    with Counted(model) as c:
        out = ksample(model, positive, negative, cfg)
    return out, c.batches, c.switches


def time_ratio(model, base_cond: list, cond: list, negative, cfg: float) -> float:
    """Median over ROUNDS of (run with ``cond``) / (run with ``base_cond``), the two interleaved (order alternating
    each round), so a shared machine's drift hits both alike."""
    ratios = []
    for r in range(ROUNDS):
        t = {}
        for name in (("base", "hook") if r % 2 else ("hook", "base")):
            t0 = time.perf_counter()
            ksample(model, base_cond if name == "base" else cond, negative, cfg)
            t[name] = time.perf_counter() - t0
        ratios.append(t["hook"] / t["base"])
    return statistics.median(ratios)


def scenario_rows(dreamo, plain_negative) -> list[list[str]]:
    S = h.pack("nodes.runtime.dreamo_model")
    one = h.random_refs([(8, 8)], [1])
    pos1 = unhooked(h.run_node("DreamO_ApplyConditioning", model=dreamo, positive=h.guided_positive(), references=one)[1])
    pos0 = unhooked(h.run_node("DreamO_ApplyConditioning", model=dreamo, positive=h.guided_positive())[1])
    noop = {"diffusion_model": {"bench_noop": [passthrough]}}
    rows = []
    for name, pos, cfg in (("1 ref, cfg 1", pos1, 1.0), ("1 ref, cfg 2", pos1, 2.0), ("0 refs, cfg 2", pos0, 2.0)):
        base_out, base_b, base_switches = counted_run(dreamo, pos, plain_negative, cfg)
        for variant, cond in (("hook registered (no-op wrapper)", hooked(pos, noop)),
                              ("hook declined (should_register)", hooked(pos, noop, S.has_dreamo_wrappers))):
            out, batches, switches = counted_run(dreamo, cond, plain_negative, cfg)
            ratio = time_ratio(dreamo, pos, cond, plain_negative, cfg)
            rows.append([name, variant, f"{base_b[:2]} -> {batches[:2]}", f"{len(base_b)} -> {len(batches)}",
                         f"{base_switches} -> {switches}", f"{ratio:.3f}", f"{(out - base_out).abs().max().item():.2e}"])
    return rows


def gap_row(base, dreamo) -> list[str]:
    """The plain model + a hook carrying DreamO's wrappers bound to DreamO's tables, vs the DreamO model."""
    S = h.pack("nodes.runtime.sampling_run")
    W = h.pack("nodes.runtime.wrapper")
    tables = dreamo.get_attachment("dreamo_embeddings")

    def run_with_tables(executor, *args, **kwargs):  # the SAMPLER_SAMPLE wrapper, tables from the hook itself
        guider = S.sampler_guider(executor, args, kwargs)
        view = SimpleNamespace(model_patcher=SimpleNamespace(get_attachment=lambda key: tables,
                                                             get_model_object=guider.model_patcher.get_model_object),
                               conds=guider.conds)
        run = S.sampling_run(view)
        if run is not None:
            args, kwargs = S.with_transformer_option(executor, args, kwargs, S.RUN_KEY, run, "bench")
        return executor(*args, **kwargs)

    carried = {"sampler_sample": {"dreamo": [run_with_tables]}, "apply_model": {"dreamo": [S.dreamo_call_wrapper]},
               "diffusion_model": {"dreamo": [W.dreamo_forward_wrapper]}}
    pos = unhooked(h.run_node("DreamO_ApplyConditioning", model=dreamo, positive=h.guided_positive(),
                              references=h.random_refs([(8, 8)], [1]))[1])
    want = ksample(dreamo, pos, h.conditioning(30), 1.0)
    silent = ksample(base, pos, h.conditioning(30), 1.0)
    got = ksample(base, hooked(pos, carried), h.conditioning(30), 1.0)
    return [f"{(silent - want).abs().max().item():.3g}", f"{(got - want).abs().max().item():.3g}"]


def dynamic_delegate_row(dreamo) -> list[str]:
    """How often CFGGuider.set_conds calls the model's loader again when the model patcher is dynamic."""
    import comfy.model_patcher
    import comfy.samplers

    dynamic = getattr(comfy.model_patcher, "ModelPatcherDynamic", None)
    if dynamic is None:
        return ["this ComfyUI has no dynamic VRAM (no ModelPatcherDynamic)"] * 2
    pos = unhooked(h.run_node("DreamO_ApplyConditioning", model=dreamo, positive=h.guided_positive())[1])
    out = []
    for cond in (pos, hooked(pos, {"diffusion_model": {"bench_noop": [passthrough]}},
                             h.pack("nodes.runtime.dreamo_model").has_dreamo_wrappers)):
        m = dreamo.clone()
        calls = []
        m.is_dynamic = lambda: True  # as ModelPatcherDynamic on a CUDA machine with comfy-aimdo
        m.get_non_dynamic_delegate = dynamic.get_non_dynamic_delegate.__get__(m)

        def loader(*args, disable_dynamic=False, _m=m, _calls=calls):
            _calls.append(disable_dynamic)
            return _m.clone()  # stands in for re-reading the model file (what UNETLoader's init does)

        m.cached_patcher_init = (loader, ())
        m.non_dynamic_delegate_model = None
        guider = comfy.samplers.CFGGuider(m)
        guider.set_conds(cond, h.conditioning(30))
        swapped = "a non-dynamic copy" if guider.model_patcher is not m else "the model itself"
        out.append(f"{len(calls)} loader call(s), samples with {swapped}")
    return out


def main() -> None:
    comfy_path = os.environ.get("COMFYUI_PATH")
    if not comfy_path:
        raise SystemExit("bench_cond_hooks: set COMFYUI_PATH to a ComfyUI checkout")
    import tempfile
    from pathlib import Path

    h.setup_comfy(comfy_path)
    h.write_loras(Path(tempfile.mkdtemp()))
    base = h.tiny_flux()
    dreamo = h.with_dreamo_tables(base)
    print(f"ComfyUI {'.'.join(map(str, h.comfyui_version()))}, tiny FLUX, euler {STEPS} steps, 32x32 latent, "
          f"time: median of {ROUNDS} interleaved rounds")
    print("| prompt | hook on the DreamO positive | batch sizes (first 3 calls) | model calls per run | "
          "patch_hooks per run | time vs no hook | max abs diff of output |")
    print("|---|---|---|---|---|---|---|")
    for row in scenario_rows(dreamo, h.conditioning(30)):
        print("| " + " | ".join(row) + " |")
    silent, carried = gap_row(base, dreamo)
    print(f"\nthe gap: plain model + DreamO conditioning vs the DreamO model: max |diff| {silent} without a hook, "
          f"{carried} with a hook carrying DreamO's wrappers and tables")
    plain, with_hook = dynamic_delegate_row(dreamo)
    print(f"dynamic VRAM (simulated): set_conds without a hook: {plain}; with a declined hook: {with_hook}")


if __name__ == "__main__":
    main()
