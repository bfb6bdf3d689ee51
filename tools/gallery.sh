#!/usr/bin/env bash
# Renders the README gallery from tools/gallery/ (licences in tools/gallery/README.md) into
# tools/gallery/results/, printing each exact command and its time per step.
#
#   cargo build --release && bash tools/gallery.sh
#
# Environment: STYLIZE (binary, default target/release/stylize), WEIGHTS (default
# ../shared/data/vgg16-caffe-imagenet.npz), SIZE (256), STEPS (200, as the README gallery), ONLY (a pair name to render
# just that one).
set -euo pipefail
cd "$(dirname "$0")/.."
STYLIZE=${STYLIZE:-target/release/stylize}
WEIGHTS=${WEIGHTS:-../shared/data/vgg16-caffe-imagenet.npz}
SIZE=${SIZE:-256}
STEPS=${STEPS:-200}
g=tools/gallery
mkdir -p "$g/results"
# name content style
pairs=(
  "chelsea_wave chelsea.jpg hokusai_great_wave.jpg"
  "astronaut_scream astronaut.jpg munch_the_scream.jpg"
  "coffee_turner coffee.jpg turner_shipwreck_of_the_minotaur.jpg"
)
for p in "${pairs[@]}"; do
  read -r name content style <<<"$p"
  if [[ -n "${ONLY:-}" && "$ONLY" != "$name" ]]; then continue; fi
  cmd=("$STYLIZE" render "$g/$content" "$g/$style" -o "$g/results/$name.jpg" --weights "$WEIGHTS" --size "$SIZE" --steps "$STEPS")
  echo "\$ ${cmd[*]}"
  log=$(mktemp)
  rc=0
  "${cmd[@]}" >"$log" 2>&1 || rc=$?
  # The header and the summary (with the time per step); on failure the whole output.
  if [[ $rc -ne 0 ]]; then cat "$log" >&2; rm -f "$log"; echo "gallery: $name failed" >&2; exit "$rc"; fi
  tr '\r' '\n' <"$log" | grep -E '^wrote|^stylize:'
  rm -f "$log"
done
