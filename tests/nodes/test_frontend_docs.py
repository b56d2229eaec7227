"""What the frontend shows about our nodes: display names, the locales ComfyUI serves (/i18n), and the per-node
help pages (WEB_DIRECTORY/docs, fetched by the frontend as /extensions/<pack>/docs/<NodeId>[/<locale>].md)."""

import importlib.util
import json
import sys

from bench import comfy_harness as h

LOCALES = h.REPO / "locales"
DOCS = h.REPO / "web" / "docs"


def ours() -> list[str]:
    import nodes

    return sorted(k for k in nodes.NODE_CLASS_MAPPINGS if k.startswith("DreamO_"))


def builder():
    spec = importlib.util.spec_from_file_location("dreamo_build_locales", h.REPO / "tools" / "build_locales.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_display_name_says_dreamo():
    import nodes

    assert len(ours()) == 7
    for node_id in ours():
        assert "DreamO" in nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()["display_name"], node_id


def test_english_locale_is_the_live_schema():
    import nodes

    on_disk = json.loads((LOCALES / "en" / "nodeDefs.json").read_text())
    assert on_disk == builder().node_defs(nodes.NODE_CLASS_MAPPINGS), "run python -m tools.build_locales"


def keys(tree) -> object:
    return {k: keys(v) for k, v in tree.items()} if isinstance(tree, dict) else None


def test_chinese_locale_covers_the_same_texts():
    en = json.loads((LOCALES / "en" / "nodeDefs.json").read_text())
    zh = json.loads((LOCALES / "zh" / "nodeDefs.json").read_text())
    assert keys(zh) == keys(en)
    for node_id, entry in zh.items():
        assert entry["display_name"] != en[node_id]["display_name"] and entry["description"]
        for name, inp in entry["inputs"].items():
            assert inp["name"] == name and inp["tooltip"] != en[node_id]["inputs"][name]["tooltip"]


def test_comfyui_serves_our_locales(tmp_path, monkeypatch):
    """ComfyUI's own /i18n builder (app/custom_node_manager.py) over a custom_nodes folder holding the pack."""
    import folder_paths

    if not hasattr(sys.modules.get("utils"), "__path__"):  # 0.3.64 leaves comfy/utils.py as a top-level "utils"
        monkeypatch.delitem(sys.modules, "utils")  # (restored after the test); app/ needs ComfyUI's utils/ package
        monkeypatch.syspath_prepend(h.comfy_path())
        monkeypatch.delitem(sys.modules, "app.custom_node_manager", raising=False)
    from app.custom_node_manager import CustomNodeManager

    (tmp_path / "dreamo-nodes").symlink_to(h.REPO, target_is_directory=True)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "custom_nodes", ([str(tmp_path)], set()))
    translations = CustomNodeManager().build_translations()
    assert translations["zh"]["nodeDefs"]["DreamO_EncodeReference"]["display_name"] == "DreamO 编码参考图"
    assert translations["en"]["nodeDefs"]["DreamO_EncodeReference"]["display_name"] == "DreamO Encode Reference"


def test_help_pages_per_node_and_web_directory():
    import nodes

    module_name = h.REPO.name
    assert nodes.EXTENSION_WEB_DIRS[module_name] == str(DOCS.parent)  # served as /extensions/<name>/
    for node_id in ours():
        info = nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()
        # the frontend builds the help URL from python_module "custom_nodes.<name>"
        assert info["python_module"].split(".")[:2] == ["custom_nodes", module_name], info["python_module"]
        page = (DOCS / f"{node_id}.md").read_text()
        assert page.startswith(f"# {info['display_name']}")
        for group in ("required", "optional"):
            for name in info["input"].get(group, {}):
                assert f"`{name}`" in page, (node_id, name)
        assert (DOCS / node_id / "zh.md").read_text().startswith("# ")
