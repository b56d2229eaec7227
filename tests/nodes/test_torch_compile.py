"""torch.compile through core's own TorchCompileModel path (``set_torch_compile_wrapper``): what DreamO adds.

Dynamo's counters are compared for the same tiny FLUX sampled a few steps (different sigmas and noise each step):
plain, plain with a pass-through DIFFUSION_MODEL wrapper (what ComfyUI's wrapper machinery itself costs), and
DreamO with two references and a scheduled strength. DreamO must add no graph break and no graph over the
pass-through wrapper, must not recompile after the first step, and the compiled output must equal eager.
"""

import pytest
import torch

from bench import comfy_harness as h

SIGMAS = (0.9, 0.7, 0.5, 0.3)


def passthrough(executor, *args, **kwargs):
    return executor(*args, **kwargs)


@torch.inference_mode()  # as ComfyUI's executor runs every prompt
def sample(model, pos, steps=SIGMAS, first_seed=0):
    out = []
    for i, sigma in enumerate(steps):
        noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(first_seed + i))
        out.append(h.denoise_once(model, pos, h.conditioning(30), noise, sigma, cfg=1.0).denoised)
    return out


def pytorch_attention(func, *args, **kwargs):
    """ComfyUI's SDPA attention for every model compared: its CPU default (sub-quadratic attention) reads the free
    memory at each call, which Dynamo guards on and recompiles for, whatever the model."""
    import comfy.ldm.modules.attention

    return comfy.ldm.modules.attention.attention_pytorch(*args, **kwargs)


def compiled_counts(model, pos, backend="eager"):
    """(graph breaks, unique graphs, frames compiled after the first step, outputs) of a compiled clone."""
    import torch._dynamo
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    m = model.clone()
    m.model_options["transformer_options"]["optimized_attention_override"] = pytorch_attention
    set_torch_compile_wrapper(model=m, backend=backend)
    out = sample(m, pos, SIGMAS[:1])
    frames_first = counters["frames"]["total"]
    out += sample(m, pos, SIGMAS[1:], first_seed=1)
    later = counters["frames"]["total"] - frames_first
    return sum(counters["graph_break"].values()), counters["stats"]["unique_graphs"], later, out


@pytest.mark.slow
def test_dreamo_adds_no_graph_break_and_no_recompile(dreamo_model):
    base, m = dreamo_model()
    refs = h.random_refs(h.REF_SHAPES[:2], [1, 2])
    refs = h.run_node("DreamO_ReferenceOptions", references=refs, index=2, strength=0.5, start_percent=0.2,
                      end_percent=1.0)[0]
    dreamo, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(), references=refs)
    wrapped = base.clone()
    wrapped.add_wrapper_with_key("diffusion_model", "passthrough", passthrough)

    plain_breaks, plain_graphs, plain_later, _ = compiled_counts(base, h.guided_positive())
    wrap_breaks, wrap_graphs, _, _ = compiled_counts(wrapped, h.guided_positive())
    breaks, graphs, later, out = compiled_counts(dreamo, pos)
    print(f"graph breaks / graphs: plain {plain_breaks}/{plain_graphs}, pass-through wrapper "
          f"{wrap_breaks}/{wrap_graphs}, DreamO {breaks}/{graphs}; frames compiled after step 1: DreamO {later}")
    assert breaks <= wrap_breaks and graphs <= wrap_graphs
    assert later == 0 and plain_later == 0  # no recompile on later steps (other sigma, other noise)
    eager = sample(dreamo, pos)
    for a, b in zip(out, eager):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_inductor_output_equals_eager(dreamo_model):
    _, m = dreamo_model()
    dreamo, pos = h.run_node("DreamO_ApplyConditioning", model=m, positive=h.guided_positive(),
                             references=h.random_refs(h.REF_SHAPES[:1], [1]))
    *_, out = compiled_counts(dreamo, pos, backend="inductor")
    eager = sample(dreamo, pos)
    for a, b in zip(out, eager):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
