#!/usr/bin/env bash
# The one-command GPU proof, run from the repository root on the borrowed machine with
# .gpu-bundle/ (from tools/gpu_bundle.sh) beside the source tree. Writes report.txt (and the
# JSON files it summarises) into $OUT. Every part has its own time limit so the whole stays
# within 10 minutes; a part that fails or times out is reported and the rest still runs.
#   PROOF_ADAPTER  the adapter to test (default vulkan:nvidia; llvmpipe for a dry run)
#   PROOF_SIZES    bench/tune sizes (default 256,512,1024)
set -uo pipefail
B=.gpu-bundle
OUT=${OUT:?set OUT to the folder for the report}
ADAPTER=${PROOF_ADAPTER:-vulkan:nvidia}
SIZES=${PROOF_SIZES:-256,512,1024}
mkdir -p "$OUT" /tmp/proof-bin
R="$OUT/report.txt"
: >"$R"
say() { echo "$@" | tee -a "$R"; }
part() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  say "== $name ($(date -u +%H:%M:%S), limit ${secs}s): $*"
  timeout "$secs" "$@" >>"$R" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || say "!! $name: exit $rc$([ $rc -eq 124 ] && echo ' (time limit)')"
}

# The Vulkan loader, where the system has none.
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in "$B"/deb/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
# Tests that read the source tree look for it where it was when they were built.
M=$(cat "$B/manifest_dir")
if [ ! -e "$M" ]; then
  mkdir -p "$(dirname "$M")" && ln -s "$PWD" "$M"
fi
for f in "$B"/bin/*.xz; do xz -dc "$f" >"/tmp/proof-bin/$(basename "$f" .xz)"; done
chmod +x /tmp/proof-bin/*
S=/tmp/proof-bin/stylize
export STYLIZE_ADAPTER=$ADAPTER XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-proof}
export STYLIZE_CACHE=/tmp/proof-cache
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

say "stylize GPU proof, $(date -u '+%Y-%m-%d %H:%M UTC'), adapter $ADAPTER, sizes $SIZES"
part "GPU" 20 sh -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true'
part "devices" 30 "$S" devices
for t in /tmp/proof-bin/test-*; do
  part "$(basename "$t")" 90 "$t"
done
part "check" 60 "$S" check
part "tune" 90 "$S" tune --sizes "$SIZES" --budget 80
part "kernels" 150 "$S" bench --sizes "$SIZES" --no-e2e --no-memory
if python3 -c 'import torch' 2>/dev/null; then
  # End to end, ours then PyTorch (TF32 off, defaults, cudnn.benchmark) at the same sizes.
  part "ours vs PyTorch" 200 python3 "$B/tools/compare_bench.py" --ours "$S bench" --sizes "$SIZES" \
    --memory-sizes "$SIZES" --adapter "$ADAPTER"
else
  say "== PyTorch: not installed here, ours alone"
  part "end to end" 200 "$S" bench --no-kernels --e2e-sizes "$SIZES" --memory-sizes "$SIZES"
fi
say "done $(date -u +%H:%M:%S)"
