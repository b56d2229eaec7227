"""UI-format workflow (frontend ``version: 0.4``) -> API prompt, using the live node registry for widget names."""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = ("MarkdownNote", "Note")  # notes live in the frontend only; graphToPrompt never sends them


def widget_names(node_cls: type) -> list[str]:
    """Widget inputs in frontend order; a seed widget is followed by its ``control_after_generate`` value and
    an image-upload combo by its ``upload`` button value."""
    names = []
    spec = node_cls.INPUT_TYPES()
    for group in ("required", "optional"):
        for name, entry in spec.get(group, {}).items():
            typ, opts = entry[0], (entry[1] if len(entry) > 1 else {})
            if (isinstance(typ, list) or typ in WIDGET_TYPES) and not opts.get("forceInput"):
                names.append(name)
                if opts.get("control_after_generate"):
                    names.append("control_after_generate")
                if opts.get("image_upload"):
                    names.append("upload")  # the frontend's upload button stores "image"
    return names


def ui_to_api(ui: dict, registry: dict[str, type]) -> dict:
    """{"<id>": {"class_type", "inputs"}} for every active node (mode 0)."""
    links = {link[0]: link for link in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) != 0 or node["type"] in FRONTEND_ONLY:
            continue
        inputs = {}
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                _, src, slot, *_ = links[inp["link"]]
                inputs[inp["name"]] = [str(src), slot]
        names = widget_names(registry[node["type"]])
        for name, value in zip(names, node.get("widgets_values", [])):
            if name not in ("control_after_generate", "upload"):
                inputs[name] = value
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
