#!/usr/bin/env bash
# Prepares .gpu-bundle/ (git-ignored) for the one-command GPU proof (tools/gpu_proof.sh) on a
# borrowed machine with an NVIDIA GPU, Python + PyTorch + CUDA, but no Rust toolchain and no
# internet: the release binary, the release test binaries that exercise the kernels, the Python
# tools, the Vulkan loader as .deb files, all stripped and compressed (kept under ~60 MB).
# Usage: bash tools/gpu_bundle.sh        (then carry .gpu-bundle with the source tree)
set -euo pipefail
cd "$(dirname "$0")/.."
B=.gpu-bundle
rm -rf "$B"
mkdir -p "$B/bin" "$B/deb" "$B/tools"

cargo build --release
# The test binaries, built in release (the GPU is fast; the f64 references are not).
cargo test --release --no-run --message-format=json >"$B/build.json"
python3 - "$B" <<'PY'
import json, shutil, sys
b = sys.argv[1]
wanted = {"kernels", "step", "shaders", "tune", "api", "check", "lbfgs", "tiled", "kernel_boundary"}
for line in open(f"{b}/build.json"):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        if m["target"]["name"] in wanted:
            shutil.copy(m["executable"], f"{b}/bin/test-{m['target']['name']}")
PY
rm "$B/build.json"
# The design studies (benches/conv.rs, benches/gram.rs): every conv and every Gram variant timed
# alone at the VGG19 shapes.
cargo bench --bench conv --bench gram --no-run --message-format=json >"$B/build.json"
python3 - "$B" <<'PY'
import json, shutil, sys
b = sys.argv[1]
for line in open(f"{b}/build.json"):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["bench"]:
        if m["target"]["name"] in ("conv", "gram"):
            shutil.copy(m["executable"], f"{b}/bin/bench-{m['target']['name']}")
PY
rm "$B/build.json"
cp target/release/stylize "$B/bin/stylize"
strip "$B"/bin/*
xz -T0 -6 "$B"/bin/*
cp tools/*.py "$B/tools/"
cp tools/gpu_proof.sh "$B/"
# Some tests read the source tree at the path they were built in (CARGO_MANIFEST_DIR).
pwd >"$B/manifest_dir"

# The Vulkan loader and GLVND for amd64: the machine may have the NVIDIA driver but neither
# libvulkan.so.1 nor libGLdispatch.so.0, which the driver's Vulkan ICD (libGLX_nvidia.so.0) needs
# (on the H200 of 2026-11-26, the loader alone gave "wgpu sees no adapter").
o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists"
mkdir -p /tmp/amd64-lists/partial
apt-get $o update -qq
(cd "$B/deb" && apt-get $o download libvulkan1 libglvnd0 libglx0 libgl1 libegl1 libopengl0 libgles2 >/dev/null)

du -sh "$B"
echo "bundle ready: $B ($(du -sm "$B" | cut -f1) MiB); on the GPU machine run: bash .gpu-bundle/gpu_proof.sh"
