"""Export a trained model to the official DreamO file format (what **Load DreamO LoRA** and
``dreamo_core.weights.formats.load_dreamo_weights`` read).

peft trains separate A matrices for q, k and v; the XLabs format has one ``down`` per fused qkv. Exactly:
``down = cat(A_q, A_k, A_v)`` (3r, in) and ``up = block_diag(s·B_q, s·B_k, s·B_v)`` (3·out, 3r), with the
peft scale s = lora_alpha / r folded into ``up`` (the format has no alpha: ΔW = up @ down). Then
``up[q rows] @ down = s·B_q A_q`` and likewise for k, v. The file's rank is therefore 3r for qkv pairs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from dreamo_core.weights.formats import IDX_KEY, T5_EMBEDDING_KEY, TASK_KEY
from dreamo_core.weights.lora_targets import block_layout


def lora_factors(module: nn.Module, adapter: str = "default",
                 weights: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """peft LoRA layer -> (A (r, in), s·B (out, r)) in float32. ``weights``: (A, B) to use instead of the
    layer's own (gathered FSDP shards)."""
    a, b = weights or (module.lora_A[adapter].weight, module.lora_B[adapter].weight)
    return a.detach().float(), b.detach().float() * float(module.scaling[adapter])


def fused_pair(modules: list[nn.Module], weights: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(down (k·r, in), up (sum out, k·r)) for k modules sharing one XLabs pair (k = 1 or 3)."""
    factors = [lora_factors(m, weights=w) for m, w in zip(modules, weights or [None] * len(modules))]
    return torch.cat([a for a, _ in factors]), torch.block_diag(*[b for _, b in factors])


def xlabs_state_dict(transformer: nn.Module, params: dict[str, torch.Tensor] | None = None,
                     prefix: str = "transformer.") -> dict[str, torch.Tensor]:
    """``{double|single}_blocks.{i}.processor.{tag}.{down|up}.weight`` for every LoRA'd block. ``params``:
    full trainable tensors by the parent model's parameter names (``prefix`` + module name), used instead of
    the modules' own parameters (FSDP: gathered from the shards)."""
    mods = dict(transformer.named_modules())
    out = {}
    for kind, count in (("double", len(transformer.transformer_blocks)), ("single", len(transformer.single_transformer_blocks))):
        blocks, tags = block_layout(kind)
        for i in range(count):
            for tag, targets in tags.items():
                names = [f"{blocks}.{i}.{t}" for t in targets]
                weights = None if params is None else [
                    tuple(params[f"{prefix}{n}.lora_{ab}.default.weight"] for ab in "AB") for n in names]
                down, up = fused_pair([mods[n] for n in names], weights)
                out[f"{kind}_blocks.{i}.processor.{tag}.down.weight"] = down
                out[f"{kind}_blocks.{i}.processor.{tag}.up.weight"] = up
    return out


def dreamo_state_dict(model: nn.Module, dtype: torch.dtype = torch.bfloat16,
                      params: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """LoRA (XLabs keys) + ``dreamo_task_embedding`` (2, D), ``dreamo_idx_embedding`` (10, D),
    ``dreamo_t5_embedding`` (10, t5_dim), cast to ``dtype`` (the official files are bf16). ``params``: the
    full trainable tensors by parameter name, used instead of the model's own (FSDP: gathered shards)."""
    table = params if params is not None else dict(model.named_parameters())
    sd = xlabs_state_dict(model.transformer, params)
    sd[TASK_KEY] = table["task_embedding"].detach().float()
    sd[IDX_KEY] = table["idx_embedding"].detach().float()
    sd[T5_EMBEDDING_KEY] = table["t5_embedding"].detach().float()
    return {k: v.to(dtype).contiguous().cpu() for k, v in sd.items()}


def export_dreamo(model: nn.Module, path: str | Path, dtype: torch.dtype = torch.bfloat16,
                  params: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the DreamO file (safetensors) and return its path (``params`` as in ``dreamo_state_dict``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(dreamo_state_dict(model, dtype, params), str(path),
              metadata={"format": "dreamo", "trainer": "dreamo-nodes"})
    return path

