"""Run by test_scale_distributed as 2 CPU processes (torch.distributed.run, gloo). ``MODE OVERRIDES...``:

ddp:
1. ``accum``: grad_accum 2 under DDP; a DDP communication hook counts the gradient all-reduce buckets of every
   micro-step; writes ``accum/rank<i>.json`` (counts) and ``accum/rank<i>.safetensors`` (parameters).
2. ``resume``: each process has its OWN output_dir (``resume/rank<i>``, as on machines without a shared
   filesystem: only process 0 writes checkpoints, so process 1's folder has none); a run killed after step 3,
   then the same command again; writes ``resume/rank<i>.json`` (steps run by the resumed run) and
   ``resume/rank<i>.safetensors``.
fsdp (``distributed: fsdp``, FSDP2 on gloo):
3. ``straight``: the whole run; ``fsdp/straight.safetensors`` (parameters gathered from the shards).
4. ``killed``: killed after step 3, resumed from the sharded checkpoint; ``fsdp/resumed.safetensors``, and
   ``fsdp/rank<i>.json`` with each process's local shard sizes.
5. ``text``: the real text path (CLIP + T5 of a tiny random FLUX folder, T5's blocks sharded) with the text
   cache: processes with and without placeholder captions in a micro-step must still call T5 alike (else FSDP's
   all-gathers hang); ``fsdp/text_rank<i>.json`` with the losses and the cache's counters.
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

import training.objective
from training.checkpoint import local_trainable_state, trainable_state
from training.config import load_config
from training.loop import train


def counting_losses(counts: list[int]):
    """compute_losses that installs (once) a DDP comm hook counting gradient all-reduce buckets per micro-step."""
    real, hooked = training.objective.compute_losses, [False]

    def hook(state: object, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        counts[-1] += 1
        return allreduce_hook(None, bucket)

    def losses(model: torch.nn.Module, *args: object) -> dict:
        if not hooked[0]:
            model.register_comm_hook(None, hook)
            hooked[0] = True
        counts.append(0)  # a new micro-step
        return real(model, *args)

    return losses


def ddp(overrides: list[str], root: Path) -> None:
    rank = int(os.environ["RANK"])
    counts: list[int] = []
    real = training.objective.compute_losses
    training.objective.compute_losses = counting_losses(counts)
    out = root / "accum"
    result = train(load_config(None, [*overrides, f"--output_dir={out}", "--data.batch_size=4", "--grad_accum=2"]),
                   stop_at=2)
    training.objective.compute_losses = real
    (out / f"rank{rank}.json").write_text(json.dumps({"counts": counts}))
    save_file(trainable_state(result.model), str(out / f"rank{rank}.safetensors"))

    own = root / "resume" / f"rank{rank}"  # not shared between the processes
    cfg = load_config(None, [*overrides, f"--output_dir={own}"])
    train(cfg, stop_at=3)
    resumed = train(cfg)
    (root / "resume" / f"rank{rank}.json").write_text(json.dumps({"steps_run": len(resumed.history["loss"]),
                                                                   "has_checkpoints": (own / "checkpoints").is_dir()}))
    save_file(trainable_state(resumed.model), str(root / "resume" / f"rank{rank}.safetensors"))


def fsdp(overrides: list[str], root: Path) -> None:
    out = root / "fsdp"
    args = [*overrides, "--distributed=fsdp", "--data.batch_size=2", "--grad_accum=2"]
    straight = train(load_config(None, [*args, f"--output_dir={out / 'straight'}"]))
    full = trainable_state(straight.model)  # a collective: every process
    rank = straight.process_index
    if rank == 0:
        save_file(full, str(out / "straight.safetensors"))
    cfg = load_config(None, [*args, f"--output_dir={out / 'killed'}"])
    train(cfg, stop_at=3)
    resumed = train(cfg)
    full = trainable_state(resumed.model)
    local = {k: v.numel() for k, v in local_trainable_state(resumed.model).items()}
    if rank == 0:
        save_file(full, str(out / "resumed.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps({"local": local, "full": {k: v.numel() for k, v in full.items()},
                                                      "steps_run": len(resumed.history["loss"])}))
    folder = tiny_flux_folder(out / "flux", rank)
    text = train(load_config(None, [*args, f"--output_dir={out / 'text'}", f"--model.pretrained={folder / 'transformer'}",
                                    f"--model.text_encoder={folder}", "--model.text_max_tokens=12",
                                    f"--model.text_cache={out / 'text_cache'}", "--checkpoint_every=100",
                                    "--stages=[{name: s1, steps: 4, lr: 0.002, mixture: {subject: 1.0}}]"]))
    enc = text.model.text_encoder
    (out / f"text_rank{rank}.json").write_text(json.dumps({
        "loss": text.history["loss"], "hits": enc.hits, "misses": enc.misses, "held": enc.encoded_with_placeholders,
        "stand_ins": enc.stand_ins,
        "t5_sharded": type(enc.encoder.t5.encoder.block[0]).__name__}))


def tiny_flux_folder(path: Path, rank: int) -> Path:
    """Process 0 writes the tiny random FLUX folder (tests/generator/tiny_flux_folder.py); the others wait for it."""
    import importlib.util
    import time

    done = path / "DONE"
    if rank == 0:
        helper = Path(__file__).parents[1] / "generator" / "tiny_flux_folder.py"
        spec = importlib.util.spec_from_file_location("tiny_flux_folder", helper)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build_tiny_flux_folder(path)
        done.write_text("1")
    while not done.is_file():
        time.sleep(0.2)
    return path


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    base = load_config(None, rest)
    {"ddp": ddp, "fsdp": fsdp}[mode](rest, Path(base.output_dir))
