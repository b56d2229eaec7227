"""Run by test_preference_distributed as 2 CPU processes (torch.distributed.run, gloo), the preference stage twice:

1. ``ddp``: batch 4 (2 pairs per process), 2 steps; each process writes ``ddp/rank<i>.safetensors`` (its LoRA).
2. ``fsdp`` (``distributed: fsdp``, FSDP2): batch 2 x grad_accum 2 (1 pair per process and micro-step), the whole
   run, exported (the LoRA gathered from the shards); process 0 writes ``fsdp/params.safetensors``, every process
   ``fsdp/rank<i>.json`` (its shard sizes and the loss history).
"""

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from training.checkpoint import local_trainable_state, trainable_state
from training.preference.config import load_preference_config
from training.preference.stage import train_preference

if __name__ == "__main__":
    overrides = sys.argv[1:]
    root = Path(load_preference_config(None, overrides).output_dir)
    ddp = train_preference(load_preference_config(None, [*overrides, f"--output_dir={root / 'ddp'}"]), stop_at=2)
    import torch.distributed as dist

    rank = dist.get_rank()
    save_file(trainable_state(ddp.model), str(root / "ddp" / f"rank{rank}.safetensors"))
    fsdp = train_preference(load_preference_config(None, [*overrides, f"--output_dir={root / 'fsdp'}",
                                                          "--distributed=fsdp", "--data.batch_size=2",
                                                          "--grad_accum=2"]))
    full = trainable_state(fsdp.model)  # a collective: every process
    if rank == 0:
        save_file(full, str(root / "fsdp" / "params.safetensors"))
    local = {k: v.numel() for k, v in local_trainable_state(fsdp.model).items()}
    (root / "fsdp" / f"rank{rank}.json").write_text(json.dumps({"local": local, "history": fsdp.history,
                                                                "exported": fsdp.lora is not None}))
