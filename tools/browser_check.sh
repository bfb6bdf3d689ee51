#!/usr/bin/env bash
# The web view (`stylize render --serve`) in a real browser: a short lavapipe render serves its
# page, headless Chromium opens it while the render runs and dumps the DOM once the render has
# ended, and the marks the page's own script leaves on <body> must say that the image was drawn
# (a non-blank canvas of the render's size, at the last step) and that the loss chart was drawn
# (points plotted, ink on the canvas).
#
# Usage: tools/browser_check.sh [path/to/stylize]   (default: target/debug/stylize)
# Needs chromium (Debian: apt-get install chromium); .ci/run installs it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/stylize}"
CHROME="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[ -n "$CHROME" ] || { echo "browser_check: no chromium found" >&2; exit 1; }
[ -x "$BIN" ] || { echo "browser_check: no stylize binary at $BIN (cargo build first)" >&2; exit 1; }

dir="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

STEPS=60
"$BIN" render builtin:photo builtin:painting -o "$dir/out.png" --size 48 --steps $STEPS \
  --weights random:1 --content-layers relu2_1 --style-layers relu1_1,relu2_1 \
  --print-every 5 --preview-every 5 --serve --serve-linger 120 2>"$dir/log" &
pid=$!

url=""
for _ in $(seq 1 600); do
  url="$(grep -o 'http://[^ ]*' "$dir/log" || true)"
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/log" >&2; echo "browser_check: the render died" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$dir/log" >&2; echo "browser_check: no URL printed" >&2; exit 1; }
echo "browser_check: opening $url"

# Virtual time stands still while the event stream is open, so the budget runs out only after
# the render has ended (the page then closes the stream); the timeout bounds a stuck browser.
timeout 300 "$CHROME" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
  --window-size=1200,900 --virtual-time-budget=5000 --dump-dom "$url" >"$dir/dom.html" 2>"$dir/chrome.log" || {
  tail -20 "$dir/chrome.log" >&2
  echo "browser_check: chromium failed" >&2
  exit 1
}

body="$(grep -o '<body[^>]*>' "$dir/dom.html" || true)"
echo "browser_check: $body"
attr() { sed -n "s/.* $1=\"\([^\"]*\)\".*/\1/p" <<<"$body"; }
fail() { echo "browser_check: $1" >&2; tail -5 "$dir/log" >&2; exit 1; }
[ "$(attr data-image-nonblank)" = 1 ] || fail "the image was not drawn (or is blank)"
[ "$(attr data-image-size)" = "48x32" ] || fail "the image drawn is not the render's 48x32"
[ "$(attr data-image-step)" = "$STEPS" ] || fail "the image drawn is not the final one (step $STEPS)"
points="$(attr data-chart-points)"; ink="$(attr data-chart-ink)"
# Four terms at step 0 and every 5th step: 13 points each.
[ "${points:-0}" -ge 40 ] || fail "the chart has ${points:-0} points drawn, expected >= 40"
[ "${ink:-0}" -ge 1000 ] || fail "the chart canvas has ${ink:-0} drawn pixels"
grep -q 'id="phase" class="finished"' "$dir/dom.html" || fail "the page does not show the render finished"
echo "browser_check: ok (image drawn, $points chart points, $ink chart pixels)"
