"""The five sections of the GPU suite, in the order they run."""

from bench.gpu_suite.sections import official, overhead, strength, torch_compile, trainer

SECTIONS = {m.SECTION.key: m.SECTION for m in (official, overhead, strength, torch_compile, trainer)}
