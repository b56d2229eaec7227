"""Run by test_distributed as 2 CPU processes (torch.distributed.run): two training steps, then each
process writes its trainable parameters to ``<output_dir>/rank<i>.safetensors``."""

import sys
from pathlib import Path

from safetensors.torch import save_file

from training.checkpoint import trainable_state
from training.config import load_config
from training.train import train

if __name__ == "__main__":
    cfg = load_config(None, sys.argv[1:])
    result = train(cfg, stop_at=2)
    save_file(trainable_state(result.model), str(Path(cfg.output_dir) / f"rank{result.process_index}.safetensors"))
