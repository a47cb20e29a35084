//! # segfit — a Go-style segregated-fit memory allocator
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: segfit::SegFit = segfit::SegFit;
//!
//! let v: Vec<u64> = (0..1000).collect();
//! assert_eq!(v.iter().sum::<u64>(), 499_500);
//! ```
//!
//! segfit manages memory the way the Go runtime's heap does: address space is reserved from the OS
//! in large arenas, cut into pages, grouped into spans, and handed out through size classes with a
//! cache per thread. It is also shipped as a C `malloc` (crate `segfit-malloc`).
//!
//! ## Glossary
//! - **Size class** (`size_class`): one of 72 object sizes from 16 B to 32 KiB; a request is rounded
//!   up to the smallest class that fits (waste < 16 B up to 128 B, at most 12.5% above).
//! - **Page**: 8 KiB, the unit of the page heap.
//! - **Arena** (`arena`): 64 MiB of address space reserved `PROT_NONE`, aligned to 64 MiB, committed
//!   front to back. A global table maps every 64 MiB of address space to its arena, and each arena
//!   maps each of its pages to a span.
//! - **Span** (`span`): a run of pages: free, holding objects of one class (small), or one large
//!   object.
//! - **Page heap** (`page_heap`): all free runs; hands out spans, coalesces freed ones, gives pages
//!   back to the OS.
//! - **Owner**: the thread cache a small span hands its objects to. Threads take objects from their
//!   own spans (or unowned ones), so two threads' objects do not share cache lines.
//! - **Central list** (`central`): per class, the spans with free objects; moves objects to and from
//!   thread caches in batches, under a per-class lock.
//! - **Thread cache** (`cache`): per thread and class, a list of free objects: the lock-free fast path.
//! - **Huge block**: above 32 MiB, mapped directly from the OS and unmapped on free.
//!
//! Layers, bottom-up (`src/README.md`): `os → arena → page_heap → span → central → cache → alloc →
//! lib` (`GlobalAlloc`) and the C ABI crate above it.
//!
//! ## The path of one `malloc(40)`
//! 1. `alloc::malloc`: 40 ≤ 32 KiB, so `size_class::class_of(40)` reads byte table `[(40+15)>>4]`:
//!    class 3 (48 bytes).
//! 2. `alloc_class(3)`: `tls::get()` gives this thread's cache; bin 3's head is popped (its word 0 is
//!    the next free object), `len` drops by one, word 1 (the free key) is cleared. Done: no lock, no
//!    atomic instruction.
//! 3. If the bin was empty: `cache::alloc_slow` — a thread without a cache yet gets one here — asks
//!    `central::fetch(3, n, …, owner id)` (n starts at 8 and doubles up to a batch of 64), which
//!    takes the class lock and moves objects from a span of the class's nonempty list that this
//!    thread owns (or nobody does), from the span's free list first, then from its never-used tail;
//!    the span becomes this thread's.
//! 4. If no span has free objects: `page_heap::alloc_small(3)` takes the heap lock and carves the
//!    class's span length (1 page for 48 B) from the best-fitting free run, splitting it, mapping each
//!    page to the new span in the arena's page map.
//! 5. If no free run fits: `page_heap::grow` reserves a new 64 MiB arena (`os::reserve`, one `mmap`
//!    of `PROT_NONE`) and adds it as one free run; pages are committed (`os::commit`, `mprotect`) in
//!    2 MiB steps as spans reach them.
//!
//! ## The path of one `free(p)`
//! 1. `alloc::free`: `arena::span_of(p)` = `ARENAS[p >> 26].pages[(p >> 13) % 8192]`: two loads. A
//!    null entry or a non-small span goes to the slow path, which classifies the pointer (large,
//!    huge, or invalid: abort with one line).
//! 2. The span's class and the division magic check that `p` is exactly the start of an object (an
//!    interior pointer aborts).
//! 3. If this thread owns the span, its bin for the class has room and word 1 of `p` is not the
//!    free key, `p` is pushed: word 0 ← old head, word 1 ← key. Done: no lock, no atomic
//!    instruction. A block of a span another live thread owns (a cross-thread free) goes instead
//!    on this thread's remote list for the class, which goes back to the spans in batches (one lock
//!    round trip per batch): it is never reused here, next to the owner's data.
//! 4. A full bin (`cache::free_slow`) gives one batch back: `central::release` takes the class lock
//!    and returns each object to its span, clearing its bit in the span's `out` bitmap — a bit that
//!    is already clear is a double free and aborts. A span whose objects are all back goes to
//!    `page_heap::free_small`, which coalesces it with free neighbours.
//! 5. Free pages go back to the OS on `collect()` (`madvise(MADV_DONTNEED)`); a large block's pages
//!    go straight back to the page heap, a huge block is unmapped.
//!
//! ## Drawbacks (today, measured: see BENCHMARKS.md)
//! - Rust's `dealloc` trusts the layout (Rust's contract) and needs no page-map lookup: about 9
//!   instructions, and `alloc` about 10 (`scripts/fastpath.sh`). The C `free` validates every
//!   pointer through the page map and the span (foreign, interior, unaligned and double frees
//!   abort) and costs about 50.
//! - Cross-thread frees go back to the owner's spans through the central list (batched), not
//!   straight to the owner as in mimalloc: producer/consumer and larson-style workloads pay a
//!   central round trip per object. Rust's `dealloc` does not look the span up, so it cannot tell
//!   a cross-thread free and keeps the block in the freeing thread's cache.
//! - Objects move between thread caches and spans one by one through the central lists (about 28
//!   instructions per object on the way back); mimalloc frees straight into the owning page.
//! - Free pages go back to the OS (decay, cap, `collect()`), but objects cached in threads and
//!   partly used spans do not.

#![deny(clippy::undocumented_unsafe_blocks)]
// Per-class arrays are indexed in parallel by class number; index loops say that best.
#![allow(clippy::needless_range_loop)]
#![warn(missing_docs)]

pub mod alloc;
pub mod arena;
pub mod cache;
pub mod central;
pub mod config;
pub mod fatal;
mod fork;
pub mod lock;
pub mod meta;
pub mod os;
pub mod page_heap;
pub mod scavenger;
pub mod size_class;
pub mod snapshot;
pub mod span;
pub mod stats;
pub mod tls;

pub use alloc::collect;
pub use stats::{stats, Stats};

use core::alloc::{GlobalAlloc, Layout};

/// The segfit allocator, for `#[global_allocator]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SegFit;

// SAFETY: every method upholds the GlobalAlloc contract: blocks are at least `layout.size()`
// bytes, aligned to `layout.align()`, distinct while live; failures return null; nothing unwinds.
unsafe impl GlobalAlloc for SegFit {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= config::MIN_ALIGN {
            alloc::malloc(layout.size())
        } else {
            alloc::malloc_aligned(layout.size(), layout.align())
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout` and is not used afterwards
        // (the GlobalAlloc contract).
        unsafe { alloc::free_sized(ptr, layout.size(), layout.align()) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        alloc::calloc_aligned(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is live with `layout` (caller).
        unsafe { alloc::realloc(ptr, new_size, layout.align()) }
    }
}

/// Fork support: takes every allocator lock in a fixed order. Installed with `pthread_atfork`
/// automatically at the first allocation; call it yourself only around a raw `fork` syscall.
pub fn fork_prepare() {
    cache::REGISTRY_LOCK.lock();
    for c in central::CENTRAL.iter().skip(1) {
        c.lock().lock();
    }
    page_heap::HEAP_LOCK.lock();
}

/// Fork support: call in the parent after `fork()`.
pub fn fork_parent() {
    page_heap::HEAP_LOCK.unlock();
    for c in central::CENTRAL.iter().skip(1).rev() {
        c.lock().unlock();
    }
    cache::REGISTRY_LOCK.unlock();
}

/// Fork support: call in the child after `fork()`: locks are re-created and the caches of the
/// threads that did not survive the fork are given back.
pub fn fork_child() {
    page_heap::HEAP_LOCK.reset();
    for c in central::CENTRAL.iter().skip(1) {
        c.lock().reset();
    }
    cache::REGISTRY_LOCK.reset();
    cache::after_fork_child();
    scavenger::after_fork_child();
}
