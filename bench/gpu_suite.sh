#!/usr/bin/env bash
# The GPU suite on a bare GPU machine, one command (from the repository root, .gpu_bundle/ made by
# bench/gpu_suite_prepare.sh beside it):
#   bash bench/gpu_suite.sh [python -m bench.gpu_suite options, e.g. --dry-run]
# Installs the bundle's wheels into private target folders (core: current diffusers + ComfyUI's comfy-kitchen /
# comfy-aimdo; official: diffusers 0.33.1 + transformers 4.45.2, the official subprocess's whole PYTHONPATH),
# unpacks ComfyUI 0.33.0, then runs python -m bench.gpu_suite. Results go to $OUT (default ./gpu_suite_out):
# gpu_suite.md, gpu_suite.json, console.log (all the suite printed) and setup.log (this script's set-up).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
bundle=$(realpath -m "${DREAMO_GPU_BUNDLE:-.gpu_bundle}")
out=${OUT:-$repo/gpu_suite_out}
py=${PYTHON:-$( [ -x /opt/torch/.venv/bin/python3 ] && echo /opt/torch/.venv/bin/python3 || command -v python3 )}
work=$(mktemp -d)
mkdir -p "$out"
[ -d "$bundle/wheels" ] || { echo "no $bundle/wheels: run bash bench/gpu_suite_prepare.sh where there is network" >&2; exit 2; }
{
  echo "python: $py; bundle: $bundle; work: $work; out: $out"
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
  pip=("$py" "$(ls "$bundle"/wheels/pip/pip-*.whl)/pip" install -q --no-index --no-deps --no-compile)
  "${pip[@]}" --target "$work/site-core" "$bundle"/wheels/core/*.whl "$bundle"/wheels/comfyui/*.whl
  "${pip[@]}" --target "$work/site-official" "$bundle"/wheels/official/*.whl
  mkdir -p "$work/ComfyUI-0.33.0"
  tar xzf "$bundle/ComfyUI-0.33.0.tar.gz" -C "$work/ComfyUI-0.33.0" --strip-components=1
  echo "set up in $SECONDS s"
} 2>&1 | tee "$out/setup.log"  # (pipefail: a failed set-up ends the script here)
export PYTHONPATH="$work/site-core${PYTHONPATH:+:$PYTHONPATH}" COMFYUI_PATH="$work/ComfyUI-0.33.0"
export DREAMO_OFFICIAL_PATH="$bundle/DreamO" DREAMO_OFFICIAL_PYTHON="$py" DREAMO_OFFICIAL_PYTHONPATH="$work/site-official"
"$py" -m bench.gpu_suite --out "$out" "$@"
