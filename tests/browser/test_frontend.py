"""Every shipped workflow in the real ComfyUI frontend (headless chromium via playwright) on a private ComfyUI
0.33 server (127.0.0.1, --cpu, the pack linked into a temporary custom_nodes; the frontend pinned by the tree, or
the one at $DREAMO_FRONTEND_ROOT, e.g. the newest on the registry, whose version $DREAMO_FRONTEND_VERSION names):
the frontend's own ``app.graphToPrompt()`` equals the intended prompt (our UI -> API conversion, widget names from
the server's /object_info), the nodes' real sizes do not overlap, the template list, thumbnails, help pages and
locales load.
Screenshots go to $DREAMO_SCREENSHOTS (default: a temporary folder).

Run: bash tools/test_browser.sh  (installs chromium / playwright if missing). Needs DREAMO_BROWSER_COMFYUI (a
ComfyUI 0.33 tree); without it the module is skipped (tools/test_browser.sh runs it with --no-skips).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.comfy_harness.workflow_api import FRONTEND_ONLY, ui_to_api

COMFY = os.environ.get("DREAMO_BROWSER_COMFYUI")
FRONTEND_ROOT = os.environ.get("DREAMO_FRONTEND_ROOT")  # another frontend's static files (default: the pinned one)
FRONTEND_VERSION = os.environ.get("DREAMO_FRONTEND_VERSION")  # the version that must be serving (tools/test_browser.sh)
if not COMFY:
    pytest.skip("DREAMO_BROWSER_COMFYUI is not set (run tools/test_browser.sh)", allow_module_level=True)
playwright_sync = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[2]
PACK = "dreamo-nodes"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
CHROMIUM = os.environ.get("DREAMO_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
START_TIMEOUT_S, PAGE_TIMEOUT_MS = 180, 60_000
IMAGES = ("dreamo_subject", "dreamo_subject2", "dreamo_subject3", "dreamo_face", "dreamo_style", "dreamo_garment")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_files() -> dict[str, set[str]]:
    """models/<folder> -> file names every workflow's loaders name (empty stand-ins: nothing is executed)."""
    want: dict[str, set[str]] = {}
    for p in WORKFLOWS:
        for n in json.loads(p.read_text())["nodes"]:
            for m in n["properties"].get("models", []):
                want.setdefault(m["directory"], set()).add(m["name"])
    want.setdefault("detection", set()).add("face_landmarker.safetensors")
    return want


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK).symlink_to(REPO, target_is_directory=True)
    for folder, names in model_files().items():
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (base / "models" / folder / name).write_bytes(b"")
    (base / "input").mkdir()
    from PIL import Image

    for i, name in enumerate(IMAGES):
        Image.new("RGB", (64, 48 + 8 * i), (40 * i, 120, 200)).save(base / "input" / f"{name}.png")
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Validation.Workflows": False}))
    port = free_port()
    log = open(base / "server.log", "w")
    frontend = ["--front-end-root", FRONTEND_ROOT] if FRONTEND_ROOT else []
    proc = subprocess.Popen([sys.executable, "-m", "bench.comfy_harness.serve_comfyui", COMFY, "--cpu",
                             "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base),
                             "--disable-auto-launch", *frontend], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            urllib.request.urlopen(url + "/object_info", timeout=5).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("ComfyUI did not start:\n" + (base / "server.log").read_text()[-4000:]) from None
            time.sleep(1)
    yield url, base
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def page(server):
    url, _ = server
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        pg = browser.new_page(viewport={"width": 2700, "height": 1500})
        pg.set_default_timeout(PAGE_TIMEOUT_MS)
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        # loopback only: anything else the page asks for (fonts, telemetry, ...) is refused
        pg.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("http://127.0.0.1",
                                                                                           "data:", "blob:"))
                 else route.abort())
        pg.goto(url)
        pg.wait_for_function("() => window.app && window.app.graph && window.app.canvas "
                             "&& window.LiteGraph && Object.keys(LiteGraph.registered_node_types).length > 100")
        pg.errors = errors
        yield pg
        browser.close()


def registry(object_info: dict) -> dict[str, type]:
    """Classes with INPUT_TYPES from the server's /object_info, for ui_to_api's widget names."""
    return {k: type(k, (), {"INPUT_TYPES": classmethod(lambda cls, v=v: v["input"])}) for k, v in object_info.items()}


def screenshots_dir(tmp_path_factory) -> Path:
    out = os.environ.get("DREAMO_SCREENSHOTS")
    return Path(out) if out else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    out = screenshots_dir(tmp_path_factory)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_frontend_prompt_equals_intended(path, server, page, shots):
    url, _ = server
    ui = json.loads(path.read_text())
    object_info = json.loads(urllib.request.urlopen(url + "/object_info", timeout=30).read())
    assert all(n["type"] in object_info or n["type"] in FRONTEND_ONLY for n in ui["nodes"])
    # the frontend's own start-up workflow may land after ours on a loaded machine: load until ours is the graph
    result = page.evaluate("""async ([ui, name]) => {
        const want = ui.nodes.map(n => String(n.id)).sort().join();
        for (let tries = 0; tries < 20; tries++) {
            await window.app.loadGraphData(ui, true, true, name);
            await new Promise(r => setTimeout(r, 300));
            if (window.app.graph._nodes.map(n => String(n.id)).sort().join() === want) break;
        }
        const p = await window.app.graphToPrompt();
        const H = LiteGraph.NODE_TITLE_HEIGHT;
        const rects = window.app.graph._nodes.map(n => ({id: n.id, type: n.type,
            x0: n.pos[0], y0: n.pos[1] - H, x1: n.pos[0] + n.size[0], y1: n.pos[1] + n.size[1]}));
        return {output: p.output, rects, titleHeight: H};
    }""", [ui, path.stem])
    expected = ui_to_api(ui, registry(object_info))
    got = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in result["output"].items()}
    assert got == expected
    rects = result["rects"]
    overlaps = [(a["id"], b["id"]) for i, a in enumerate(rects) for b in rects[i + 1:]
                if a["x0"] < b["x1"] and b["x0"] < a["x1"] and a["y0"] < b["y1"] and b["y0"] < a["y1"]]
    by_id = {r["id"]: r for r in rects}
    assert overlaps == [], [(by_id[a], by_id[b]) for a, b in overlaps]
    x0 = min(r["x0"] for r in rects)
    y0 = min(r["y0"] for r in rects)
    page.evaluate("([x, y]) => { const c = window.app.canvas; c.ds.scale = 0.62; c.ds.offset = [90 - x, 50 - y];"
                  " c.setDirty(true, true); }", [x0, y0])
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / f"{path.stem}.png"))
    assert page.errors == []


def test_template_list_thumbnails_help_and_locales(server, page):
    url, _ = server
    listed = json.loads(urllib.request.urlopen(url + "/api/workflow_templates", timeout=30).read())
    assert sorted(listed[PACK]) == sorted(p.stem for p in WORKFLOWS)
    sizes = page.evaluate("""async ([pack, names]) => Promise.all(names.map(n => new Promise(resolve => {
        const img = new Image();
        img.onload = () => resolve([n, img.naturalWidth]);
        img.onerror = () => resolve([n, 0]);
        img.src = `/api/workflow_templates/${pack}/${n}.jpg`;
    })))""", [PACK, [p.stem for p in WORKFLOWS]])
    assert all(w >= 800 for _, w in sizes), sizes  # the URL the template browser uses for custom-node thumbnails
    help_status = page.evaluate("""async (pack) => {
        const r = await fetch(`/extensions/${pack}/docs/DreamO_EncodeReference.md`);
        const z = await fetch(`/extensions/${pack}/docs/DreamO_EncodeReference/zh.md`);
        return [r.status, (await r.text()).split('\\n')[0], z.status];
    }""", PACK)
    assert help_status == [200, "# DreamO Encode Reference", 200]
    i18n = page.evaluate("async () => (await (await fetch('/i18n')).json())")
    assert i18n["zh"]["nodeDefs"]["DreamO_LoadLoRA"]["display_name"] == "加载 DreamO LoRA"
    replacements = page.evaluate("async () => (await (await fetch('/api/node_replacements')).json())")
    assert replacements["DreamORefEncode"][0]["new_node_id"] == "DreamO_EncodeReference"
    display = page.evaluate("() => LiteGraph.registered_node_types['DreamO_EncodeReference'].title")
    assert display == "DreamO Encode Reference"


def test_the_intended_frontend_is_serving(page):
    """tools/test_browser.sh runs this module once per frontend: the page must be that frontend."""
    served = page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__")
    assert served and (FRONTEND_VERSION is None or served == FRONTEND_VERSION), served
