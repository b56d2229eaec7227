#!/usr/bin/env bash
# The real-browser test (tests/browser): a private ComfyUI 0.33.0 on 127.0.0.1 (--cpu, the pack linked into a
# temporary custom_nodes), every workflow loaded in the real frontend by headless chromium through playwright, run
# twice: with the frontend pinned by the 0.33.0 tree's requirements.txt (installed in this python) and with the
# newest comfyui-frontend-package (NEWEST_FRONTEND, pip-installed with --target into the cache folder and served
# with ComfyUI's --front-end-root, so this python's own frontend is never replaced).
# Installs what is missing: Debian's chromium (apt), playwright (pip; never `playwright install`), both frontends.
# Bounded: each run is killed after DREAMO_BROWSER_TIMEOUT s. Screenshots (DREAMO_SCREENSHOTS) come from the pinned
# frontend's run.
#   bash tools/test_browser.sh
#   DREAMO_SCREENSHOTS=docs/screenshots bash tools/test_browser.sh   # keep the screenshots
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${DREAMO_SHARED:-../shared}/comfyui
dest=${DREAMO_COMFY_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dreamo-comfyui}
tree=${DREAMO_BROWSER_COMFYUI:-}
if [ -z "$tree" ]; then
  if [ -f "$shared/prepare.sh" ]; then tree=$(bash "$shared/prepare.sh" 0.33.0 "$dest" | tail -n 1); else tree=$dest/ComfyUI-0.33.0; fi
fi
[ -f "$tree/main.py" ] || { echo "no ComfyUI 0.33.0 tree at $tree" >&2; exit 2; }
if ! command -v chromium >/dev/null; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
python -c "import playwright" 2>/dev/null || pip install playwright
frontend=$(grep -E '^comfyui-frontend-package==' "$tree/requirements.txt")
python - "$frontend" <<'PY' || pip install "$frontend"
import importlib.metadata, sys
want = sys.argv[1].split("==")[1]
assert importlib.metadata.version("comfyui-frontend-package") == want
PY
export DREAMO_BROWSER_COMFYUI=$tree
newest=${NEWEST_FRONTEND:-1.58.1}  # the newest comfyui-frontend-package on the registry when this was written
newest_root=$dest/frontend-$newest
if [ ! -f "$newest_root/comfyui_frontend_package/static/index.html" ]; then
  rm -rf "$newest_root"
  pip install --no-deps --target "$newest_root" "comfyui-frontend-package==$newest"
fi
echo "== browser test, ComfyUI 0.33.0 + its pinned frontend ${frontend#*==}"
DREAMO_FRONTEND_VERSION=${frontend#*==} timeout "${DREAMO_BROWSER_TIMEOUT:-900}" \
  python -m pytest -q -p no:cacheprovider tests/browser --no-skips
echo "== browser test, ComfyUI 0.33.0 + the newest frontend $newest"
env -u DREAMO_SCREENSHOTS DREAMO_FRONTEND_VERSION="$newest" \
  DREAMO_FRONTEND_ROOT="$newest_root/comfyui_frontend_package/static" timeout "${DREAMO_BROWSER_TIMEOUT:-900}" \
  python -m pytest -q -p no:cacheprovider tests/browser --no-skips
