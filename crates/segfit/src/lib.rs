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
//! - **Owner**: the thread cache a small span belongs to. Only the owner allocates from a span and
//!   frees into it, without a lock; other threads hand their frees of its objects to the owner's
//!   *inbox*. So a thread's objects come from its own pages and two threads' objects do not share
//!   cache lines.
//! - **Central list** (`central`): per class, the spans no thread owns (left by exited threads, or
//!   given back when empty); a thread takes a span from here, or a fresh one, when its own have no
//!   free objects. Per-class lock.
//! - **Thread cache** (`cache`): per thread and class, a list of free objects (the bin: the
//!   lock-free fast path), the owned spans (partial and full), and a remote list of frees for
//!   spans other threads own. At thread exit a cache is *parked* whole (up to four) and the next
//!   thread that starts adopts it, spans, bins and owner id included; one not adopted within a
//!   second is torn down when a thread next needs a span or exits (or by `collect`).
//! - **Huge block**: above 32 MiB, mapped directly from the OS and unmapped on free.
//!
//! Layers, bottom-up (`src/README.md`): `os → arena → page_heap → span → owner → central → cache → alloc →
//! lib` (`GlobalAlloc`) and the C ABI crate above it.
//!
//! ## The path of one `malloc(40)`
//! 1. `alloc::malloc_c` (the C ABI; Rust's `alloc::malloc` is the same without step 2's check):
//!    40 ≤ 32 KiB, so `size_class::bin_offset(40)` reads table `[(40+15)>>4]`: 96, the byte offset
//!    of the bin of class 3 (48 bytes) in a thread cache (`3 * BIN_STRIDE`).
//! 2. `alloc_bin(96)`: `tls::get()` gives this thread's cache; bin 3's head must carry the free
//!    key in word 1 (every free object does; one without it was handed out twice — a double free
//!    across threads — or written after its free: abort, `cache::bad_pop`); it is popped (its
//!    word 0 is the next free object), its `room` grows by one, word 1 is cleared, its allocation
//!    counter counts. Done: no lock, no atomic instruction (20 instructions as the exported C
//!    `malloc`, call to return; 17 without the key check).
//! 3. If the bin was empty: `cache::alloc_slow` — a thread without a cache yet gets one here —
//!    first takes back everything in its inbox (objects other threads freed into its spans), then
//!    refills the bin from its own spans of the class without a lock: each span's whole free list
//!    moves at once (its `listed` bitmap is cleared a word at a time), then never-used objects are
//!    carved from a span's tail, until about a batch (up to 64 objects; fewer while a new thread's
//!    limit slow-starts). Spans with nothing left move to the thread's full list.
//! 4. If the thread has no span of the class with free objects: `central::take_span(3, id)` takes
//!    the class lock and hands over an unowned span with free objects, or else
//!    `page_heap::alloc_small(3)` takes the heap lock and carves the
//!    class's span length (1 page for 48 B) from the best-fitting free run, splitting it, mapping each
//!    page to the new span in the arena's page map.
//! 5. If no free run fits: `page_heap::grow` reserves a new 64 MiB arena (`os::reserve`, one `mmap`
//!    of `PROT_NONE`) and adds it as one free run; pages are committed (`os::commit`, `mprotect`) in
//!    2 MiB steps as spans reach them.
//!
//! ## The path of one `free(p)`
//! 1. `alloc::free`: `arena::span_of(p)` = `ARENAS[p >> 26].pages[(p >> 13) % 8192]`: a range
//!    check and two loads. A null entry goes to the slow path, which classifies the pointer
//!    (large, huge, or invalid: abort with one line).
//! 2. `Span::is_object_start`: `(p - start) * mul_check < obj_limit`, a division-free test that
//!    the offset is a multiple of the object size *and* below the span's object count (see
//!    `span::object_test`; `obj_limit` is 0 for free and large spans, so they take the slow path
//!    too; an interior pointer aborts in the slow path).
//! 3. If this thread owns the span and word 1 of `p` is not the free key, `p` is pushed on the
//!    class's bin (the span's `bin` field holds its offset; word 0 ← old head, word 1 ← key) while
//!    the bin has room (one `decl`/`js` takes it): 35 instructions as the exported C `free`, no
//!    lock, no atomic instruction. A full bin grows while the thread's budget lasts;
//!    past that, `cache::free_local_full` puts `p` straight onto the span's own free list
//!    (`Span::push_free`: its bit in the span's `listed` bitmap is set — a bit already set is a
//!    double free and aborts — and `used` drops) under the thread's own id lock (a store and a
//!    load, with `membarrier` on the helper's side: a helper emptying a stalled owner's inbox
//!    takes it; see `owner.rs`). A span that had
//!    nothing to give moves to the back of the thread's partial list; a span with no object out
//!    any more goes back to the central list unless it is the class's only partial span.
//! 4. A block of a span another thread owns (a cross-thread free) of 64 bytes or more is pushed on
//!    this thread's bin while the bin is less than 3/4 full, and reused here (as tcmalloc does; it
//!    shares at most its end lines with the owner's data). A smaller one, or one that finds the bin
//!    fuller, goes on this thread's remote list for the class, and a small one is never reused
//!    here, next to the owner's data (no passive false sharing). A full remote list
//!    (`cache::flush_remote`) is handed to the owners' inboxes with one compare-exchange per owner
//!    and batch; the owner takes its inbox with one exchange on its next refill, moving whole chains
//!    into its bins (or each object back on its span as in step 3). Objects of unowned spans go
//!    back under the class lock (`central::release`), in batches. An owner that has stopped
//!    allocating has its inbox emptied into its spans by the threads that find it stalled.
//! 5. Free pages go back to the OS on `collect()` (`madvise(MADV_DONTNEED)`); a large block's pages
//!    go straight back to the page heap, a huge block is unmapped.
//!
//! ## Drawbacks (today, measured: see BENCHMARKS.md)
//! - Rust's `dealloc` trusts the layout (Rust's contract) and needs no page-map lookup: about 9
//!   instructions, and `alloc` about 10 (`scripts/fastpath.sh`). The C `free` validates every
//!   pointer through the page map and the span (foreign, interior and unaligned pointers abort,
//!   and double frees on one thread; see below for other threads) and costs 35 as the exported C function; mimalloc's unchecked free costs 27 and its
//!   malloc 17, like segfit's (`scripts/fastpath.sh` counts both the same way).
//! - Rust's `dealloc` does not look the span up, so it cannot tell a cross-thread free: the block
//!   stays in the freeing thread's bin and is reused there.
//! - Objects freed by other threads into the spans of a thread that stops allocating (say, `main`
//!   waiting in `join` while workers free what it allocated) wait in its inbox until another
//!   thread finds the owner stalled (256 objects waiting, no refill for 2 ms) and puts them back
//!   on the owner's spans for it. Until then they are not reusable: larson's peak RSS is about
//!   13.5 MiB (17.5 MiB without that help; 9.4 MiB with the previous design, which returned every
//!   cross-thread free through the central lists). For that help the owner flags itself in its
//!   slow paths that touch its spans (a store and a load) and the helper runs `membarrier`; where
//!   `membarrier` is not available (Linux before 4.14, seccomp) nobody helps, and the
//!   objects wait for the owner's next refill or its exit.
//! - The `segfit-malloc` `free` of a block whose bin is full goes straight back to its span:
//!   about 45 more instructions than a bin push (binary_trees with 512K-node trees, fragment's
//!   scattered frees); mimalloc's free always goes to its page, at about 27 in all.
//! - A cross-thread double free is caught at `free` only when both copies reach the span's free
//!   list (its bitmap). When a copy waits in a bin instead (the owner's bin, or, for a block of 64
//!   bytes or more, the bin of the other thread that freed it), or is spliced into a bin with its
//!   inbox chain, it is caught later, when the block is handed out the second time (the C
//!   `malloc`'s key check, 3 instructions): the first caller may have used it by then. Rust's
//!   `alloc` does not check (Rust's `dealloc` contract rules double frees out).
//! - Free pages go back to the OS (decay, cap, `collect()`), but objects cached in threads and
//!   partly used spans do not.

// Without the `std` feature the core needs only `core` and `libc` (the C library builds it so:
// no unwinder, backtrace symbolizer or `libgcc_s` in libsegfit.so: 2.1 MB -> 350 KB, and about
// 0.3 MiB less resident in every process it is preloaded into).
#![cfg_attr(not(any(test, feature = "std")), no_std)]
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
pub mod owner;
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
    cache::fork_lock_own();
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
    cache::fork_unlock_own();
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
    cache::fork_unlock_own();
}
