#!/usr/bin/env bash
# Assemble .gpu_bundle/: everything bench/gpu_suite.sh needs on a bare GPU machine (Python 3.12 x86-64 with torch,
# transformers 5, peft, accelerate, safetensors, einops; no diffusers, no ComfyUI, no network), on a machine with
# PyPI, then check that the bundle and this repository's files stay under the 64 MiB the machine takes along.
#   git clone https://github.com/bytedance/DreamO /path/to/DreamO      # once, where there is network
#   bash bench/gpu_suite_prepare.sh /path/to/DreamO [/path/to/ComfyUI-0.33.0.tar.gz]
# The ComfyUI tarball defaults to ../shared/comfyui/ComfyUI-0.33.0.tar.gz ($DREAMO_SHARED/comfyui/...). Only the
# official dreamo/*.py and LICENSE are copied (never into git: .gpu_bundle/ is ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
official=${1:?usage: bash bench/gpu_suite_prepare.sh /path/to/DreamO [/path/to/ComfyUI-0.33.0.tar.gz]}
comfy_tar=${2:-${DREAMO_SHARED:-../shared}/comfyui/ComfyUI-0.33.0.tar.gz}
bundle=.gpu_bundle
cap=$((64 * 1024 * 1024))
py=${PYTHON:-python3}
[ -f "$official/dreamo/dreamo_pipeline.py" ] || { echo "no $official/dreamo/dreamo_pipeline.py (a bytedance/DreamO checkout)" >&2; exit 2; }
[ -f "$comfy_tar" ] || { echo "no $comfy_tar" >&2; exit 2; }

rm -rf "$bundle"
mkdir -p "$bundle/wheels/pip" "$bundle/wheels/core" "$bundle/wheels/comfyui" "$bundle/wheels/official" "$bundle/DreamO/dreamo"
# wheels for CPython 3.12 on manylinux x86-64 whatever this machine is; pure-python ones as py3-none-any only
binary=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
pure=(--only-binary=:all: --python-version 3.12 --implementation py --platform any)
get() { local dir=$1 kind=$2; shift 2; local -n flags=$kind; "$py" -m pip download -q --no-deps "${flags[@]}" -d "$bundle/wheels/$dir" "$@"; }
requests_stack=(requests==2.34.2 urllib3==2.8.0 charset-normalizer==3.5.3 importlib-metadata==10.2.0 zipp==4.1.2)
get pip pure pip==26.3                                           # the installer itself (the machine's venv has none)
get core pure diffusers==0.42.1 "${requests_stack[@]}"           # dreamo_core, the benches, the trainer
get comfyui pure comfy-kitchen==0.2.31                           # ComfyUI 0.33 imports it (eager backend: the
get comfyui binary comfy-aimdo==0.4.13                           #   CUDA wheel is 58 MB, over the cap)
get official pure diffusers==0.33.1 transformers==4.45.2 huggingface-hub==0.36.2 "${requests_stack[@]}"
get official binary tokenizers==0.20.3                           # what transformers 4.45.2 requires
cp "$comfy_tar" "$bundle/ComfyUI-0.33.0.tar.gz"
cp "$official"/dreamo/*.py "$bundle/DreamO/dreamo/"
cp "$official/LICENSE" "$bundle/DreamO/" 2>/dev/null || true

repo_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
bundle_bytes=$(du -sb "$bundle" | cut -f1)
total=$((repo_bytes + bundle_bytes))
awk -v r="$repo_bytes" -v b="$bundle_bytes" -v t="$total" 'BEGIN { m = 1048576;
  printf "repository files %.1f MiB + .gpu_bundle %.1f MiB = %.1f MiB (cap 64 MiB)\n", r / m, b / m, t / m }'
du -sh "$bundle"/wheels/* "$bundle"/ComfyUI-0.33.0.tar.gz "$bundle"/DreamO
[ "$total" -le "$cap" ] || { echo "over the 64 MiB the GPU machine takes along" >&2; exit 1; }
