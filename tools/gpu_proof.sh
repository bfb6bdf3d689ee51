#!/usr/bin/env bash
# The one-command GPU proof, run from the repository root on the borrowed machine with
# .gpu-bundle/ (from tools/gpu_bundle.sh) beside the source tree. Writes report.txt into $OUT.
# Every part has its own time limit and the whole stays within PROOF_LIMIT seconds (default 540):
# a part that fails or times out is reported and the rest still runs. The parts run in order of
# what a lease is for: the adapter and numerics first, then the conv and Gram designs, the tuner
# and the kernels, then ours against PyTorch, and the test binaries last with the time left.
#   PROOF_ADAPTER  the adapter to test (default vulkan:nvidia; llvmpipe for a dry run)
#   PROOF_SIZE     the input size of the design study, the tuner and the kernel bench (default 512)
#   PROOF_E2E      end-to-end sizes, ours and PyTorch (default 256,512,1024)
#   PROOF_DESIGNS  the conv variants of the design study (default: tiled, every GEMM tile (looped,
#                  unrolled, double-buffered), two deeper K-chunks, Winograd on the tuner's tiles)
set -uo pipefail
B=.gpu-bundle
OUT=${OUT:?set OUT to the folder for the report}
ADAPTER=${PROOF_ADAPTER:-vulkan:nvidia}
SIZE=${PROOF_SIZE:-512}
E2E=${PROOF_E2E:-256,512,1024}
DESIGNS=${PROOF_DESIGNS:-tiled,gemm:all,gemm:r8x8w16x16k16u,gemm:r4x8w16x16k32u,gemm-wino2:r4x4w16x16k16u,gemm-wino4:r4x4w16x16k16u,gemm-wino4:r8x8w16x16k8u,gemm-wino4:r8x8w16x16k8ud}
END=$(($(date +%s) + ${PROOF_LIMIT:-540}))
mkdir -p "$OUT" /tmp/proof-bin
R="$OUT/report.txt"
: >"$R"
say() { echo "$@" | tee -a "$R"; }
part() { # name, seconds, command... (cut to the time left before END)
  local name=$1 secs=$2; shift 2
  local left=$((END - $(date +%s)))
  [ "$secs" -gt "$left" ] && secs=$left
  if [ "$secs" -lt 5 ]; then
    say "-- $name: skipped (no time left)"
    return
  fi
  say "== $name ($(date -u +%H:%M:%S), limit ${secs}s): $*"
  timeout "$secs" "$@" >>"$R" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || say "!! $name: exit $rc$([ $rc -eq 124 ] && echo ' (time limit)')"
}

# The Vulkan loader and GLVND (the NVIDIA ICD, libGLX_nvidia.so.0, needs libGLdispatch.so.0).
if ! ldconfig -p | grep -q libvulkan.so.1 || ! ldconfig -p | grep -q libGLdispatch.so.0; then
  for f in "$B"/deb/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
for j in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json; do
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -e "$j" ]; then export VK_DRIVER_FILES=$j; fi
done
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

say "stylize GPU proof, $(date -u '+%Y-%m-%d %H:%M UTC'), adapter $ADAPTER, size $SIZE, e2e $E2E"
part "GPU" 20 sh -c 'nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true'
part "devices" 30 "$S" devices
part "check" 60 "$S" check
# Every conv design alone (forward + backward with mask) at the VGG19 shapes of a SIZE input.
part "conv designs" 120 /tmp/proof-bin/bench-conv --variant "$DESIGNS" \
  --size "$SIZE" --runs 10 --budget 1
# Every Gram variant alone (forward, backward, and each dispatch alone) at the style taps.
part "gram designs" 45 /tmp/proof-bin/bench-gram --variant tiled,gemm --size "$SIZE" --runs 10 \
  --budget 1 --split
# At the end-to-end sizes too: the bench reads the table only, and a render tunes its own shapes.
part "tune" 100 "$S" tune --sizes "$SIZE,$E2E" --budget 80
# Kernels and end to end with the table the tuner just wrote (bench reads it).
part "kernels" 90 "$S" bench --sizes "$SIZE" --no-e2e --no-memory
# The same kernels built with wgpu's runtime checks (index clamps, loop counters), which stylize
# leaves out: what leaving them out gives on this GPU.
part "kernels, checked" 60 env STYLIZE_SHADER_CHECKS=1 "$S" bench --sizes "$SIZE" --no-e2e --no-memory
if python3 -c 'import torch' 2>/dev/null; then
  # End to end, ours then PyTorch (TF32 off, defaults, cudnn.benchmark) at the same sizes.
  part "ours vs PyTorch" 240 python3 "$B/tools/compare_bench.py" --ours "$S bench" --sizes "$E2E" \
    --memory-sizes "$E2E" --adapter "$ADAPTER"
else
  say "== PyTorch: not installed here, ours alone"
  part "end to end" 150 "$S" bench --no-kernels --e2e-sizes "$E2E" --memory-sizes "$E2E"
fi
for t in /tmp/proof-bin/test-*; do
  # --nocapture: a failure shows its message at once, even if the binary is then cut at its limit.
  part "$(basename "$t")" 60 "$t" --nocapture
done
cp -r "$STYLIZE_CACHE/tune" "$OUT/" 2>/dev/null
say "done $(date -u +%H:%M:%S)"
