//! The small-object fast path, in isolation, for counting its instructions with callgrind
//! (hardware counters are not available on our machines). `scripts/fastpath.sh` runs it under
//! `valgrind --tool=callgrind --toggle-collect=<fn>` for each function below and divides by the
//! number of operations.
//!
//! Each function performs `OPS` operations on a thread cache that is already warm (the refill and
//! flush slow paths are amortised in, as in real use).

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

static A: segfit::SegFit = segfit::SegFit;

/// Operations per measured call.
const OPS: usize = 64;

/// Rust `alloc` of a constant 32-byte layout (the usual `Box::new` case: the class is folded).
#[inline(never)]
fn rust_alloc_const(out: &mut [*mut u8; OPS]) {
    let l = Layout::new::<[u64; 4]>();
    for slot in out.iter_mut() {
        // SAFETY: a non-zero layout.
        *slot = unsafe { A.alloc(l) };
    }
}

/// Rust `dealloc` of a constant 32-byte layout.
#[inline(never)]
fn rust_dealloc_const(ps: &[*mut u8; OPS]) {
    let l = Layout::new::<[u64; 4]>();
    for &p in ps {
        // SAFETY: allocated by `rust_alloc_const` with `l`.
        unsafe { A.dealloc(p, l) };
    }
}

/// C-style `malloc(n)` with a size unknown at compile time.
#[inline(never)]
fn c_malloc(out: &mut [*mut u8; OPS], size: usize) {
    for slot in out.iter_mut() {
        *slot = segfit::alloc::malloc_c(size);
    }
}

/// C-style `free(p)`: the pointer is validated through the arena table and page map.
#[inline(never)]
fn c_free(ps: &[*mut u8; OPS]) {
    for &p in ps {
        // SAFETY: allocated by `c_malloc`.
        unsafe { segfit::alloc::free(p) };
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut v = [std::ptr::null_mut(); OPS];
    for _ in 0..rounds {
        rust_alloc_const(&mut v);
        rust_dealloc_const(&v);
        c_malloc(&mut v, black_box(40));
        c_free(&v);
    }
    println!("{} operations per function", rounds * OPS);
}
