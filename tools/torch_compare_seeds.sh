#!/bin/bash
# Runs tools/torch_compare.py over several seeds and prints, for the image gradient, stylize's
# normwise error against PyTorch f64 and PyTorch f32's own, per seed, then their median and worst.
# With --pool max these spread: f32 rounding can flip a 2x2 window's argmax (README "Testing").
#   tools/torch_compare_seeds.sh SEEDS [torch_compare.py options...]
#   e.g. tools/torch_compare_seeds.sh 10 --pool max --size 96 --stylize target/debug/stylize
set -euo pipefail
n=${1:?usage: $0 SEEDS [torch_compare.py options]}
shift
here=$(dirname "$0")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((s = 0; s < n; s++)); do
    # --tol 1: report, never fail (the spread is what is measured).
    line=$(python3 "$here/torch_compare.py" --seed "$s" --tol 1 "$@" | grep '^image gradient')
    read -r ours f32 <<<"$(awk '{print $(NF-1), $NF}' <<<"$line")"
    echo "seed $s: stylize $ours torch-f32 $f32" | tee -a "$out"
done
summary() {
    sort -g | awk '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "median %.2e, worst %.2e", m, v[NR]}'
}
echo "stylize vs f64:   $(awk '{print $4}' "$out" | summary)"
echo "torch f32 vs f64: $(awk '{print $NF}' "$out" | summary)"
