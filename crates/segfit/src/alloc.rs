//! The allocation API: `malloc`-style entry points over the layers, used by [`crate::SegFit`]
//! (`GlobalAlloc`) and by the C library. See the crate docs for the path of one malloc and one free.
//!
//! Routing by size: `size <= MAX_SMALL` (and alignment at most a page) → size class → thread cache;
//! up to `HUGE_THRESHOLD` → a large span from the page heap; above → a huge block mapped directly.
//! Every free is validated through the arena table and page map before anything is written:
//! pointers segfit did not hand out, interior pointers and detected double frees abort with one
//! line (see `fatal`). Nothing here allocates through the heap, panics, or unwinds.

use crate::arena;
use crate::cache::{self, ThreadCache};
use crate::config::{
    HUGE_THRESHOLD, MAX_PAGE_HEAP_ALIGN, MAX_REQUEST, MAX_SMALL, MIN_ALIGN, PAGE_SIZE,
};
use crate::fatal::fatal;
use crate::os::{self, Why};
use crate::page_heap;
use crate::size_class::{self, class_info, class_of, BIN_STRIDE};
use crate::span::State;
use crate::tls;
use core::ptr;

/// Blocks of at least this many bytes (one cache line) freed by a thread that does not own their
/// span are reused by that thread while its bin is less than 3/4 full (see `free`); smaller ones
/// always go back to their owner (or, for an unowned span, to the central list). Measured
/// (BENCHMARKS.md): larson 0.58 → 0.44 s and peak RSS 11.9 → 10.9 MiB (tcmalloc 0.41 s, 16 MiB);
/// reusing only while the bin is half empty, 0.47 s; reusing until the bin is full, 0.43 s but
/// 14.7 MiB (the bins then fill with other threads' blocks, own frees overflow and the bins grow
/// to their budget).
const REUSE_MIN: usize = 64;
/// The bin offset of `REUSE_MIN`'s class: classes at or above it are reused.
const REUSE_BIN_OFFSET: usize = size_class::bin_offset_const(REUSE_MIN);

/// Pops an object from the bin at byte offset `off` (`class * BIN_STRIDE`) of this thread's
/// cache, or takes the slow path. With `CHECK` (the C ABI's entry points) the object must carry
/// the free key; Rust's allocations trust it, as Rust's `dealloc` trusts the layout.
#[inline(always)]
fn alloc_bin<const CHECK: bool>(off: usize) -> *mut u8 {
    let tc: *mut ThreadCache = tls::get();
    // SAFETY: the slot always holds a valid cache and `off` is a class's bin offset; a non-null
    // head is a free object of the class whose word 0 links the next one and whose word 1 holds
    // the free key (static caches have null heads).
    unsafe {
        let bin = cache::bin_at(tc, off);
        if !(*bin).head.is_null() {
            return (*bin).pop::<CHECK>();
        }
    }
    cache::alloc_slow(off / BIN_STRIDE)
}

/// Pops an object of class `c` from this thread's cache, or takes the slow path.
#[inline(always)]
fn alloc_class<const CHECK: bool>(c: usize) -> *mut u8 {
    debug_assert!(c < size_class::NUM_CLASSES);
    alloc_bin::<CHECK>(c * BIN_STRIDE)
}

#[inline(always)]
fn malloc_in<const CHECK: bool>(size: usize) -> *mut u8 {
    if size <= MAX_SMALL {
        return alloc_bin::<CHECK>(size_class::bin_offset(size));
    }
    alloc_large_or_huge(size, MIN_ALIGN, false)
}

/// Allocates `size` bytes aligned to 16. Null if out of memory or `size > isize::MAX`.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    malloc_in::<false>(size)
}

/// `malloc` for the C ABI: a small block taken from the thread's cache must still carry the free
/// key, else the process aborts (a block handed out twice: see `cache::bad_pop`).
#[inline(always)]
pub fn malloc_c(size: usize) -> *mut u8 {
    malloc_in::<true>(size)
}

fn malloc_aligned_in<const CHECK: bool>(size: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if align <= MIN_ALIGN {
        return malloc_in::<CHECK>(size);
    }
    if align <= PAGE_SIZE {
        if let Some(c) = size_class::class_of_aligned(size, align) {
            return alloc_class::<CHECK>(c);
        }
    }
    alloc_large_or_huge(size, align, false)
}

/// Allocates `size` bytes aligned to `align` (any power of two). Null if out of memory or the
/// request cannot be met.
pub fn malloc_aligned(size: usize, align: usize) -> *mut u8 {
    malloc_aligned_in::<false>(size, align)
}

/// `malloc_aligned` for the C ABI (checked like [`malloc_c`]).
pub fn malloc_aligned_c(size: usize, align: usize) -> *mut u8 {
    malloc_aligned_in::<true>(size, align)
}

/// The size class a request of `size` bytes at `align` is served from, if any.
#[inline]
fn small_class(size: usize, align: usize) -> Option<usize> {
    if align <= MIN_ALIGN {
        (size <= MAX_SMALL).then(|| class_of(size))
    } else if align <= PAGE_SIZE {
        size_class::class_of_aligned(size, align)
    } else {
        None
    }
}

/// Frees `p`, which was allocated (or last reallocated) with exactly `size` and `align`, trusting
/// them to find its size class without the page-map lookup (Rust's `dealloc` contract). With the
/// `checked-dealloc` feature the pointer is validated and a size that does not match aborts.
///
/// # Safety
/// `p` is a live block of segfit's whose last allocation or reallocation asked for `size` bytes
/// at alignment `align`; nothing uses it afterwards.
#[inline(always)]
pub unsafe fn free_sized(p: *mut u8, size: usize, align: usize) {
    #[cfg(not(feature = "checked-dealloc"))]
    if size <= MAX_SMALL && align <= MIN_ALIGN {
        let tc: *mut ThreadCache = tls::get();
        // SAFETY: the caller guarantees `p` is a live object of class `class_of(size)`; the slot
        // holds a valid cache, and static caches have max 0 so they are never written.
        unsafe {
            let c = class_of(size);
            let bin = (*tc).bins.get_unchecked_mut(c);
            if bin.room > 0 {
                bin.link(p, cache::free_key());
                bin.room -= 1;
                return;
            }
            return cache::free_sized_slow(p, c);
        }
    }
    #[cfg(feature = "checked-dealloc")]
    check_sized(p, size, align, "dealloc");
    // SAFETY: forwarded caller contract.
    unsafe { free(p) }
}

/// Aborts (naming `op`) unless `p` is a live block whose allocation asked for `size` bytes at
/// alignment `align`, as far as segfit can tell: for a small block, `size` and `align` must map to
/// its size class (or, for a block a C `realloc` shrank in place, be more than half of it); for
/// large and huge blocks, `size` must be the size asked for. Used by
/// `free_sized`/`free_aligned_sized` (C23) and, with `checked-dealloc`, by Rust's `dealloc`.
#[inline(never)]
pub fn check_sized(p: *mut u8, size: usize, align: usize, op: &str) {
    let ok = match classify(p, op) {
        Block::Small { class, .. } => {
            // Its own class, or (after a C `realloc` shrank it in place) more than half of it.
            let csize = class_info(class).size as usize;
            small_class(size, align) == Some(class) || (size <= csize && size > csize / 2)
        }
        Block::Large { span } => {
            // SAFETY: classify returned a live large span.
            small_class(size, align).is_none() && unsafe { (*span).requested } == size.max(1)
        }
        // SAFETY: classify returned a live huge record.
        Block::Huge { h } => (unsafe { (*h).requested }) == size.max(1),
    };
    if !ok {
        fatal(
            op,
            "size mismatch (sized deallocation with the wrong size or alignment)",
            p as usize,
        );
    }
}

/// Allocates zeroed memory; pages known to be fresh from the OS are not written.
pub fn calloc_aligned(size: usize, align: usize) -> *mut u8 {
    calloc_aligned_in::<false>(size, align)
}

/// `calloc_aligned` for the C ABI (checked like [`malloc_c`]).
pub fn calloc_aligned_c(size: usize, align: usize) -> *mut u8 {
    calloc_aligned_in::<true>(size, align)
}

fn calloc_aligned_in<const CHECK: bool>(size: usize, align: usize) -> *mut u8 {
    let small = size <= MAX_SMALL
        && (align <= MIN_ALIGN || (align <= PAGE_SIZE && size.max(align) <= MAX_SMALL));
    if small {
        let p = malloc_aligned_in::<CHECK>(size, align);
        if !p.is_null() {
            // SAFETY: `p` holds at least `size` bytes.
            unsafe { ptr::write_bytes(p, 0, size) };
        }
        return p;
    }
    alloc_large_or_huge(size, align, true)
}

#[cold]
#[inline(never)]
fn alloc_large_or_huge(size: usize, align: usize, zero: bool) -> *mut u8 {
    if size > MAX_REQUEST || align > MAX_REQUEST / 2 + 1 {
        return ptr::null_mut();
    }
    let size = size.max(1);
    if size <= HUGE_THRESHOLD && align <= MAX_PAGE_HEAP_ALIGN {
        cache::global_init();
        let (s, zeroed) = page_heap::with(|h| h.alloc_large(size, align));
        if s.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: `s` is a fresh large span of at least `size` bytes.
        unsafe {
            let p = (*s).start as *mut u8;
            if zero && !zeroed {
                ptr::write_bytes(p, 0, size);
            }
            return p;
        }
    }
    alloc_huge(size, align)
}

fn huge_len(size: usize) -> Option<usize> {
    size.checked_add(PAGE_SIZE - 1)
        .map(|s| s & !(PAGE_SIZE - 1))
}

fn alloc_huge(size: usize, align: usize) -> *mut u8 {
    let Some(len) = huge_len(size) else {
        return ptr::null_mut();
    };
    // Aligning to the arena size keeps each 64 MiB slot of the huge table to one block, and
    // covers every alignment up to 64 MiB.
    let map_align = align.max(crate::config::ARENA_SIZE);
    let p = os::map(len, map_align, Why::HugeMap);
    if p.is_null() {
        return p;
    }
    let h = page_heap::with(|h| h.add_huge(p as usize, len, size));
    if h.is_null() {
        os::unmap(p, len, Why::HugeUnmap);
        return ptr::null_mut();
    }
    p
}

/// What a pointer handed to `free`/`realloc`/`usable_size` turned out to be.
enum Block {
    Small {
        class: usize,
        span: *mut crate::span::Span,
    },
    Large {
        span: *mut crate::span::Span,
    },
    Huge {
        h: *mut arena::Huge,
    },
}

/// Finds the block `p` starts, or aborts naming `op` if `p` is not a live block's start.
#[inline]
fn classify(p: *mut u8, op: &str) -> Block {
    let a = p as usize;
    let s = arena::span_of(a);
    if !s.is_null() {
        // SAFETY: spans in the page map are valid records.
        let span = unsafe { &*s };
        match span.state {
            State::Small => {
                if span.object_index(a).is_none() {
                    if a & (MIN_ALIGN - 1) != 0 {
                        fatal(op, "invalid pointer (unaligned)", a);
                    }
                    fatal(op, "invalid pointer (interior or out of range)", a);
                }
                // SAFETY: `a` is an object start of small span `s`.
                if unsafe { cache::is_freed(p, span.class as usize, s) } {
                    fatal(op, "invalid pointer (already freed)", a);
                }
                return Block::Small {
                    class: span.class as usize,
                    span: s,
                };
            }
            State::Large => {
                if span.start != a {
                    fatal(op, "invalid pointer (interior of a large block)", a);
                }
                return Block::Large { span: s };
            }
            State::Free => fatal(op, "invalid pointer (double free or never allocated)", a),
        }
    }
    if !arena::arena_of(a).is_null() {
        fatal(op, "invalid pointer (double free or never allocated)", a);
    }
    let h = arena::huge_of(a);
    if !h.is_null() {
        // SAFETY: registered huge records are valid until removed under the heap lock; a race
        // here means the user frees the same block twice concurrently.
        if unsafe { (*h).base } != a {
            fatal(op, "invalid pointer (interior of a huge block)", a);
        }
        return Block::Huge { h };
    }
    fatal(op, "invalid pointer (not allocated by segfit)", a)
}

/// Frees `p` (null is ignored). Aborts with a one-line message on a pointer segfit did not hand
/// out, an interior pointer, or a detected double free.
///
/// # Safety
/// If `p` is a live block of segfit's, nothing uses it afterwards.
#[inline(always)]
pub unsafe fn free(p: *mut u8) {
    let a = p as usize;
    let s = arena::span_of(a);
    if !s.is_null() {
        // SAFETY: page map entries are valid span records; for a small span `class`, `start`,
        // `mul_check` and `obj_limit` are immutable while it is small, and `obj_limit` is 0 for
        // every other span. A span whose `owner` is this thread's id is changed by this thread only.
        unsafe {
            if (*s).is_object_start(a) {
                let off = (*s).bin as usize;
                let tc = tls::get();
                let key = cache::free_key();
                if *(p as *mut usize).add(1) != key {
                    let owner = (*s).owner.load(core::sync::atomic::Ordering::Relaxed);
                    if owner == (*tc).id {
                        // Local: onto this thread's bin for reuse while it has room, else
                        // straight back on the span, which this thread owns. The room is taken
                        // first (one instruction); `free_local_full` gives it back.
                        let bin = cache::bin_at(tc, off);
                        (*bin).room -= 1;
                        if (*bin).room >= 0 {
                            (*bin).link(p, key);
                            return;
                        }
                        return cache::free_local_full(tc, s, p, off);
                    }
                    // Another thread's span. A block of a cache line or more is reused here while
                    // the bin is less than 3/4 full, as tcmalloc and jemalloc reuse every block
                    // (it shares at most its end lines with the owner's data); a smaller one goes
                    // home, so no thread's small objects end up interleaved with another's.
                    if off >= REUSE_BIN_OFFSET {
                        let bin = cache::bin_at(tc, off);
                        if (*bin).room as i64 * 4 > (*bin).max as i64 {
                            (*bin).link(p, key);
                            (*bin).room -= 1;
                            return;
                        }
                    }
                    // Remote: onto this thread's remote list, for the owner.
                    if cache::try_remote_push(tc, p, off / BIN_STRIDE, owner, key) {
                        return;
                    }
                }
                return cache::free_slow(p, off / BIN_STRIDE, s);
            }
        }
    }
    if !p.is_null() {
        // SAFETY: forwarded caller contract.
        unsafe { free_other(p) }
    }
}

#[cold]
#[inline(never)]
unsafe fn free_other(p: *mut u8) {
    match classify(p, "free") {
        // SAFETY: `p` is the start of a small object of `class` (classify checked).
        Block::Small { class, span } => unsafe { cache::free_slow(p, class, span) },
        // SAFETY: a live large span whose object the caller no longer uses.
        Block::Large { span } => page_heap::with(|h| unsafe { h.free_large(span) }),
        Block::Huge { h } => {
            // SAFETY: a registered huge block; the record is read before it is freed.
            let (base, len) = unsafe { ((*h).base, (*h).len) };
            // SAFETY: as above.
            page_heap::with(|heap| unsafe { heap.remove_huge(h) });
            os::unmap(base as *mut u8, len, Why::HugeUnmap);
        }
    }
}

/// The usable size of live block `p` (at least what was asked for; all of it may be written).
/// Aborts on an invalid pointer; 0 for null.
pub fn usable_size(p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    block_usable(&classify(p, "malloc_usable_size"))
}

fn block_usable(b: &Block) -> usize {
    match *b {
        Block::Small { class, .. } => class_info(class).size as usize,
        // SAFETY: classify returned a live large span.
        Block::Large { span } => unsafe { (*span).npages * PAGE_SIZE },
        // SAFETY: classify returned a live huge record.
        Block::Huge { h } => unsafe { (*h).len },
    }
}

/// Resizes `p` to `new_size` bytes keeping alignment `align` and the first `min(old, new)` bytes.
/// `p` null acts as `malloc_aligned`. On failure returns null and `p` is untouched.
///
/// # Safety
/// `p` is null or a live block of segfit's allocated with alignment `align` (or less, if
/// `align <= MIN_ALIGN`); on success the caller uses only the returned pointer.
pub unsafe fn realloc(p: *mut u8, new_size: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded caller contract.
    unsafe { resize(p, new_size, align, false) }
}

/// C `realloc`: like [`realloc`] at the minimum alignment, but a small block also shrinks in place
/// while the new size is more than half its usable size (as glibc does; C's `free` finds a block's
/// class through the page map, so the block need not match its size's class).
///
/// # Safety
/// As [`realloc`].
pub unsafe fn realloc_c(p: *mut u8, new_size: usize) -> *mut u8 {
    // SAFETY: forwarded caller contract.
    unsafe { resize(p, new_size, MIN_ALIGN, true) }
}

/// `loose` is C's `realloc` (which also allocates through the checked C paths).
unsafe fn resize(p: *mut u8, new_size: usize, align: usize, loose: bool) -> *mut u8 {
    let alloc = if loose {
        malloc_aligned_c
    } else {
        malloc_aligned
    };
    if p.is_null() {
        return alloc(new_size, align);
    }
    if new_size > MAX_REQUEST {
        return ptr::null_mut();
    }
    let b = classify(p, "realloc");
    let old = block_usable(&b);
    // Bytes worth copying if the block moves: what was asked for, where segfit knows it.
    let keep = match b {
        Block::Small { .. } => old,
        // SAFETY: classify returned a live large span / huge record.
        Block::Large { span } => unsafe { (*span).requested },
        // SAFETY: as above.
        Block::Huge { h } => unsafe { (*h).requested },
    };
    match b {
        Block::Small { class, .. } => {
            // Stay exactly when a fresh request would get the same class: then the block's class
            // is always the one its current size and alignment map to, which `free_sized` relies on.
            if small_class(new_size, align) == Some(class)
                || (loose && new_size <= old && new_size > old / 2)
            {
                return p;
            }
        }
        Block::Large { span } => {
            if new_size > MAX_SMALL && new_size <= HUGE_THRESHOLD {
                // SAFETY: a live large span.
                if page_heap::with(|h| unsafe { h.resize_large(span, new_size) }) {
                    return p;
                }
            }
        }
        Block::Huge { h } => {
            if new_size > HUGE_THRESHOLD / 2 {
                if let Some(len) = huge_len(new_size) {
                    if len == old {
                        return p;
                    }
                    // mremap without MREMAP_MAYMOVE only grows into unmapped space, which is in
                    // no arena and no other huge block (both start on 64 MiB boundaries).
                    // SAFETY: `h` is a live huge block mapped at `p` with `old` bytes.
                    if unsafe { os::remap_in_place(p, old, len) } {
                        // SAFETY: the mapping now has `len` bytes.
                        page_heap::with(|heap| unsafe { heap.resize_huge(h, len, new_size) });
                        return p;
                    }
                }
            }
        }
    }
    let q = alloc(new_size, align);
    if q.is_null() {
        return q;
    }
    // SAFETY: both blocks are live and distinct; `old` and `new_size` bound their sizes.
    unsafe {
        ptr::copy_nonoverlapping(p, q, keep.min(new_size));
        free(p);
    }
    q
}

/// Returns every free page to the OS now (Go's `debug.FreeOSMemory`): the calling thread's cache
/// is flushed first and exited threads' parked caches are torn down, then all free page runs are
/// released. Returns the bytes released.
pub fn collect() -> usize {
    cache::release_parked(true);
    cache::flush_current();
    crate::central::release_empty_spans();
    page_heap::with(|h| h.release_all())
}
