"""``training/configs/flux_dev.yaml`` cannot import Python, so its FLUX.1-dev facts are checked against
``dreamo_core.spec.FLUX_DEV`` here: the routing layers, and any transformer size the YAML writes."""

from __future__ import annotations

from pathlib import Path

import yaml

from dreamo_core.spec import FLUX_DEV
from training.config import ROUTE_LAYERS, load_config

CONFIG = Path(__file__).resolve().parents[2] / "training" / "configs" / "flux_dev.yaml"
SIZE_KEYS = ("num_layers", "num_single_layers", "attention_head_dim", "num_attention_heads", "joint_attention_dim",
             "pooled_projection_dim", "axes_dims_rope")  # model keys that are FLUX.1-dev's sizes when written


def test_flux_dev_yaml_routes_the_specs_layers() -> None:
    cfg = load_config(CONFIG)
    assert cfg.loss.route_layers == list(FLUX_DEV.route_layers)
    assert cfg.loss.route_layers != list(ROUTE_LAYERS)  # not the tiny models' default: the YAML sets them


def test_flux_dev_yaml_sizes_agree_with_the_spec() -> None:
    model = yaml.safe_load(CONFIG.read_text())["model"]
    want = FLUX_DEV.diffusers_config()
    written = {k: model[k] for k in SIZE_KEYS if k in model}
    assert written == {k: want[k] for k in written}, written
    assert model["pretrained"]  # the sizes come from the FLUX.1-dev folder itself


def test_flux_dev_preference_yaml_loads_and_matches_the_memory_plan() -> None:
    from training.memory_plan import build_plans
    from training.preference.config import load_preference_config

    path = CONFIG.with_name("flux_dev_preference.yaml")
    cfg = load_preference_config(path)
    assert cfg.preference.localized and cfg.preference.mode == "dpo" and len(cfg.bases) == 3
    assert cfg.data.plain_caption_prob == 0.0 and cfg.model.gradient_checkpointing
    model = yaml.safe_load(path.read_text())["model"]
    assert not {k for k in SIZE_KEYS if k in model}  # FLUX.1-dev's sizes come from the folder itself
    import inspect

    plan_rank = inspect.signature(build_plans).parameters["preference_rank"].default
    assert cfg.model.lora_rank == plan_rank  # the plan's preference table is this config's LoRA
