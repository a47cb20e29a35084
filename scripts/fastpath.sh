#!/usr/bin/env bash
# Instructions per small malloc and free on segfit's fast path, counted with callgrind.
# Usage: scripts/fastpath.sh [rounds]   (each function does 64 operations per round)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20000}
cargo build --release -q -p segfit --example fastpath
bin=${CARGO_TARGET_DIR:-target}/release/examples/fastpath
ops=$((rounds * 64))
printf '%-20s %12s %10s\n' function instructions per-op
for f in rust_alloc_const rust_dealloc_const c_malloc c_free; do
  out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect="fastpath::$f" "$bin" "$rounds" >/dev/null 2>&1
  total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  rm -f "$out"
  awk -v f="$f" -v t="$total" -v n="$ops" 'BEGIN { printf "%-20s %12d %10.2f\n", f, t, t / n }'
done
