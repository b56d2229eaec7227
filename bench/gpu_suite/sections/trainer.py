"""Section 5: one trainer optimizer step at FLUX.1-dev width (gradient checkpointing, bf16 base, LoRA rank 128,
512² target + references at 512², batch 1) on as many blocks as the settings give, its peak memory against
``training.memory_plan``'s prediction for the same setting (``bench.bench_trainer --plan``)."""

from __future__ import annotations

from bench.common import cell
from bench.flops import tokens_for
from bench.gpu_suite.section import Part, Section, device_kind, start_s, step_s, table
from bench.gpu_suite.settings import Settings
from dreamo_core.spec import DreamOSpec

BUILD_S = {"cuda": 25.0, "cpu": 3.0}  # the random transformer with LoRA built on the device, the plan on meta


def arguments(s: Settings) -> list[str]:
    return ["--size", s.trainer_size, "--device", s.device, "--plan", "--batch", "1", "--refs", str(s.trainer_refs),
            "--blocks", ",".join(map(str, s.trainer_blocks)), "--repeat", str(max(1, s.repeat // 2)),
            *(["--bf16"] if s.dtype == "bf16" else [])]


def run(s: Settings, deadline: float | None) -> dict:
    from bench import bench_trainer

    return {"rows": [bench_trainer.step_vs_plan(bench_trainer.arguments().parse_args(arguments(s)))], "notes": []}


def estimate(s: Settings) -> float:
    from bench import bench_trainer

    size = bench_trainer.SIZES[s.trainer_size]
    spec = DreamOSpec(num_double_blocks=s.trainer_blocks[0], num_single_blocks=s.trainer_blocks[1])
    tokens = tokens_for(size["image"], size["image"]) + s.trainer_refs * tokens_for(size["ref"], size["ref"])
    steps = (2 + max(1, s.repeat // 2)) * step_s(s, spec, tokens, passes=4)  # forward, recompute, backward (2x)
    return start_s(s, "diffusers") + BUILD_S[device_kind(s)] + steps


def plan(s: Settings) -> str:
    from bench import bench_trainer

    size = bench_trainer.SIZES[s.trainer_size]
    return (f"one routed optimizer step ({s.trainer_size}, {s.trainer_blocks[0]} double + {s.trainer_blocks[1]} single "
            f"blocks, {'bf16' if s.dtype == 'bf16' else 'fp32'} base, gradient checkpointing, LoRA 128, batch 1, "
            f"{size['image']}² + {s.trainer_refs} x {size['ref']}²): step time, peak memory vs training.memory_plan")


def markdown(part: str, result: dict) -> list[str]:
    rows = []
    for r in result["rows"]:
        ratio = r["peak_gib"] / r["plan_total_gib"] if r["peak_gib"] is not None else None
        rows.append([f"{r['blocks'][0]} + {r['blocks'][1]}", str(r["refs"]), f"{r['step_s']:.3f}", cell(r["peak_gib"], ".2f"),
                     f"{r['plan_total_gib']:.3g}", f"{r['plan_weights_gib']:.3g}", f"{r['plan_training_state_gib']:.3g}",
                     f"{r['plan_activations_gib']:.3g}", cell(ratio, ".3f")])
    return table(["blocks (double + single)", "refs", "step s", "measured peak GiB", "plan GiB", "plan weights",
                  "plan LoRA state", "plan activations", "measured / plan"], rows)


SECTION = Section("trainer", "5. Trainer step at FLUX.1-dev width vs the memory plan", plan, estimate,
                  lambda s: [Part("trainer", run)], markdown)
