#!/usr/bin/env bash
# Instructions per small malloc and free on segfit's fast path, counted with callgrind.
# Usage: scripts/fastpath.sh [rounds]   (each function does 64 operations per round)
# The rust_* and c_* rows are the core's entry points inlined into a Rust loop (examples/fastpath.rs);
# the libsegfit rows are the exported C `malloc`/`free` of libsegfit.so, called from a C loop
# (scripts/fastpath_c.c) under LD_PRELOAD: everything the C ABI adds, call and return included;
# the same loop runs under mimalloc, jemalloc and tcmalloc when their Debian packages are installed,
# and under mimalloc v3 and snmalloc once segfit-bench has built them.
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

cargo build --release -q -p segfit-malloc
lib=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)/libsegfit.so
cbin=$(mktemp)
cc -O2 -o "$cbin" scripts/fastpath_c.c
# The same C loop under each peer found (Debian's packages), for comparison: their exported
# functions, counted the same way.
libs=("libsegfit=$lib")
for peer in mimalloc=libmimalloc.so.2 jemalloc=libjemalloc.so.2 tcmalloc=libtcmalloc_minimal.so.4; do
  path=/usr/lib/x86_64-linux-gnu/${peer#*=}
  [ -e "$path" ] && libs+=("${peer%%=*}=$path")
done
# And the peers segfit-bench builds from source (mimalloc v3, snmalloc), when it has built them.
cache=${CARGO_TARGET_DIR:-target}/segfit-bench-cache/peers
for peer in mimalloc3=libmimalloc3.so snmalloc=libsnmallocshim.so; do
  [ -e "$cache/${peer#*=}" ] && libs+=("${peer%%=*}=$(cd "$cache" && pwd)/${peer#*=}")
done
for entry in "${libs[@]}"; do
  name=${entry%%=*}
  for f in malloc free; do
    out=$(mktemp)
    # Through a shell that waits, so that a peer killed by a signal is reported here once.
    if ! LD_PRELOAD="${entry#*=}" sh -c '"$@"; exit $?' sh valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect="$f" "$cbin" "$rounds" >/dev/null 2>&1; then
      printf '%-20s %23s\n' "$name $f" "fails under valgrind"
      rm -f "$out"
      continue
    fi
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    rm -f "$out"
    awk -v f="$name $f" -v t="$total" -v n="$ops" 'BEGIN { printf "%-20s %12d %10.2f\n", f, t, t / n }'
  done
done
rm -f "$cbin"
