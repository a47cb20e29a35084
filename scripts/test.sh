#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the Debian packages the tests use when they are
# missing (C/C++ compilers, python3, sqlite3, the peer allocators, valgrind), then checks formatting
# and lints, then runs every crate's tests (unit, integration, model-based, C programs and real
# programs under LD_PRELOAD).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(gcc g++ make binutils python3 sqlite3 valgrind libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The core again with its checking features: every Rust dealloc validated, span and page heap
# invariants checked on every slow-path operation.
cargo test -p segfit --features checked-dealloc,expensive-checks
# The core without std, as the C library builds it, inside std test programs.
cargo test -p segfit --no-default-features --features initial-exec
# The Rust in-process benchmark is its own workspace (its peers compile C and C++): lint it too.
cargo clippy --release --manifest-path crates/segfit-bench-rs/Cargo.toml -- -D warnings
