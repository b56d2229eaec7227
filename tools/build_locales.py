"""Writes locales/en/nodeDefs.json from the live node schemas (display names, descriptions, input and output
tooltips), the file ComfyUI's /i18n endpoint serves to the frontend (app/custom_node_manager.py reads
``locales/<lang>/nodeDefs.json`` of every custom node). locales/zh/nodeDefs.json is translated by hand and
must cover the same keys (tests/nodes/test_frontend_docs.py).

Run (from the repository root): COMFYUI_PATH=/path/to/ComfyUI python -m tools.build_locales
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = "DreamO_"


def node_defs(registry: dict[str, type]) -> dict:
    """{node_id: {display_name, description, inputs: {name: {name, tooltip}}, outputs: {"i": {name, tooltip}}}}
    in the frontend's nodeDefs locale format, for our nodes in ``registry``."""
    out = {}
    for node_id in sorted(k for k in registry if k.startswith(PREFIX)):
        info = registry[node_id].GET_NODE_INFO_V1()
        inputs = {}
        for group in ("required", "optional"):
            for name, entry in info["input"].get(group, {}).items():
                opts = entry[1] if len(entry) > 1 else {}
                inputs[name] = {"name": name, **({"tooltip": opts["tooltip"]} if opts.get("tooltip") else {})}
        tips = info.get("output_tooltips") or [None] * len(info["output_name"])
        outputs = {str(i): {"name": name, **({"tooltip": tip} if tip else {})}
                   for i, (name, tip) in enumerate(zip(info["output_name"], tips))}
        out[node_id] = {"display_name": info["display_name"], "description": info["description"],
                        "inputs": inputs, "outputs": outputs}
    return out


def main() -> None:
    from bench.comfy_harness import setup_comfy

    setup_comfy(os.environ["COMFYUI_PATH"])
    import nodes

    path = REPO / "locales" / "en" / "nodeDefs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(node_defs(nodes.NODE_CLASS_MAPPINGS), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
