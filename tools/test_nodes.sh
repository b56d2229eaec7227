#!/usr/bin/env bash
# The node suite (tests/nodes, the bench's ComfyUI-nodes variant and the GPU suite's ComfyUI parts) on every bundled ComfyUI tree, oldest and newest we support, one pytest process
# per version, with --no-skips: a skipped node test fails the run.
#   bash tools/test_nodes.sh                    # both trees from ../shared/comfyui
#   DREAMO_COMFY_VERSIONS=0.33.0 bash tools/test_nodes.sh
# Trees are unpacked (and their in-process requirements installed into the current python, never a CUDA
# torch) by ../shared/comfyui/prepare.sh into $DREAMO_COMFY_DIR (default ~/.cache/dreamo-comfyui).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${DREAMO_SHARED:-../shared}/comfyui
dest=${DREAMO_COMFY_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dreamo-comfyui}
versions=${DREAMO_COMFY_VERSIONS:-"0.3.64 0.33.0"}
[ -x "$shared/prepare.sh" ] || [ -f "$shared/prepare.sh" ] || { echo "no $shared/prepare.sh (is ../shared beside the repo?)" >&2; exit 2; }
mkdir -p "$dest"
declare -A tree
for v in $versions; do  # install everything first: 0.33's requirements are a superset, both trees share them
  tree[$v]=$(bash "$shared/prepare.sh" "$v" "$dest" | tail -n 1)
done
summary=()
for v in $versions; do
  echo "== node tests on ComfyUI $v (${tree[$v]})"
  start=$SECONDS
  log=$(mktemp)
  set +e
  COMFYUI_PATH=${tree[$v]} python -m pytest -q tests/nodes tests/bench/test_bench_official.py::test_comfyui_nodes_compute_the_core_step tests/bench/test_gpu_suite_comfy.py --no-skips -p no:cacheprovider 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  summary+=("ComfyUI $v: $(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$log" | tail -n 1 | tr -d '=') ($((SECONDS - start)) s)")
  rm -f "$log"
  [ "$rc" -eq 0 ] || { printf '%s\n' "${summary[@]}"; echo "node tests failed on ComfyUI $v" >&2; exit "$rc"; }
done
printf '%s\n' "${summary[@]}"
