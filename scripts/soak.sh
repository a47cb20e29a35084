#!/usr/bin/env bash
# A long soak of libsegfit: crates/segfit-malloc/tests/c/soak.c (threads that come and go,
# cross-thread frees, every block's contents checked, no RSS creep, RSS back after malloc_trim)
# under segfit for MINUTES (default 60), one line of RSS and live bytes per second on stderr.
#   usage: scripts/soak.sh [MINUTES] [THREADS] [extra env, e.g. SEGFIT_SCAVENGER=1]
# The test suite runs the same program for 10 s (tests/programs.rs, soak_threads_and_memory).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
threads=${2:-4}
shift $(( $# > 2 ? 2 : $# ))
cargo build --release -q -p segfit-malloc
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target="$PWD/$target" ;; esac
exe="$target/release/soak"
cc -O2 -pthread -fno-builtin -o "$exe" crates/segfit-malloc/tests/c/soak.c
echo "soak: $minutes min, $threads threads, under $target/release/libsegfit.so $*" >&2
env "$@" SOAK_VERBOSE=1 SOAK_CHECK_TRIM=1 LD_PRELOAD="$target/release/libsegfit.so" \
  "$exe" "$(awk -v m="$minutes" 'BEGIN { print m * 60 }')" "$threads"
