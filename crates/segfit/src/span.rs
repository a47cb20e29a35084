//! Spans: runs of pages. A span is free (in the page heap), holds objects of one size class
//! (small), or holds one large object. See the crate docs for where spans sit in the layers.
//!
//! A small span is either *owned* by one thread cache (`owner != 0`) or *unowned* (`owner == 0`,
//! kept by its class's central list). Its object state (`free`, `used`, `bump`, `listed`) is
//! changed only by the owner, without a lock, or, while unowned, under the class's central lock.
//! `owner` itself changes only under the class lock. `start`, `class`, `bin`, `size`, `magic`,
//! `mul_check`, `obj_limit` and `end` are immutable while the span is small; `free` reads
//! `start`, `mul_check`, `obj_limit`, `bin` and `owner` without a lock.
//!
//! Invariants of a small span:
//! - objects are `start + i * size` for `i < objects`;
//! - `listed` bit `i` is set ⇔ object `i` is on the span's free list `free`;
//! - `used + free_count + (end - bump) / size == objects`, where `free_count == popcount(listed)`
//!   is the length of `free` and `[bump, end)` holds objects never handed out (carved lazily, so a
//!   fresh span touches no memory): `used` counts objects with users, in thread caches, or on
//!   their way back to the span;
//! - an unowned span is on its central `nonempty` list ⇔ it has an object to give
//!   (`free` non-null or `bump < end`); an owned one is on its owner's `partial` list if it has
//!   one, else on its owner's `full` list (`in_full`).
//!
//! Free spans (page heap lock): `zeroed` ⇒ every page reads as zero; `dirty` ≤ `npages` bounds the
//! pages that may be resident (0 after `madvise` gave them back, or for never-touched arena pages).

use crate::config::PAGE_SIZE;
use crate::size_class::{Class, BIN_STRIDE, MAX_OBJECTS};
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};

/// What a span is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// A free run of pages in the page heap.
    Free = 0,
    /// Objects of one size class.
    Small = 1,
    /// One large object.
    Large = 2,
}

/// One span. Allocated from the page heap's metadata allocator.
///
/// The fields every thread's `free` reads (geometry, object test, class, owner) share the first
/// cache line; the fields a span's owner writes on every local free and refill start on the next one,
/// so that other threads freeing into the span do not keep pulling the owner's line away.
#[repr(C, align(64))]
pub struct Span {
    /// Address of the first page.
    pub start: usize,
    /// Small: end of the object area (`start + objects * size`); 0 for free and large spans.
    pub end: usize,
    /// Number of pages.
    pub npages: usize,
    /// Small: object size; `(offset * magic) >> 32` is the object index of an offset.
    pub size: u32,
    /// Small: see `size`.
    pub magic: u32,
    /// Small: id of the thread cache that owns the span (0: none, the central list keeps it).
    /// Written under the class lock; read without it by `free` to pick the local path (only the
    /// owner's own read is exact; another thread's stale read only routes a free through the
    /// owner's inbox, which re-checks it).
    pub owner: AtomicU32,
    /// Size class (0 unless small).
    pub class: u8,
    /// See [`State`].
    pub state: State,
    /// Small: `class * BIN_STRIDE`, the byte offset of the class's bin in a thread cache.
    pub bin: u16,
    /// Small: the multiplier of the division-free object test (see [`Span::is_object_start`]).
    pub mul_check: u64,
    /// Small: `objects * (size * mul_check mod 2^64)`; 0 for free and large spans, so that no
    /// address of theirs passes the test.
    pub obj_limit: u64,
    /// Large: the size the user asked for (for statistics).
    pub requested: usize,
    /// Link in a [`SpanList`] (central nonempty list, an owner's partial/full list, or a page
    /// heap free list).
    pub next: *mut Span,
    /// Link in a [`SpanList`].
    pub prev: *mut Span,
    /// Free: when the run was last freed (milliseconds, coarse monotonic clock), for the scavenger.
    pub freed_at: u64,
    /// Small: span-local free list (word 0 links the next object, word 1 holds the free key).
    pub free: *mut u8,
    /// Small: next never-used object.
    pub bump: usize,
    /// Small: objects carved and not on the free list (see the module invariants).
    pub used: u32,
    /// Whether the span is linked on some list.
    pub linked: bool,
    /// Owned small span: on the owner's `full` list (else on its `partial` list).
    pub in_full: bool,
    /// Unowned small span with no object out, kept on its central list (class lock).
    pub kept: bool,
    /// Free span: every page is known to read as zero.
    pub zeroed: bool,
    /// Free span: pages that may still be resident (an upper bound; 0 once given back).
    pub dirty: usize,
    /// Small: bit `i` set ⇔ object `i` is on `free`.
    pub listed: [u64; MAX_OBJECTS / 64],
}

// The owner's hot fields start on the second cache line.
const _: () = assert!(core::mem::offset_of!(Span, next) == 64);

/// What `Span::push_free` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The object is back; the span still has other objects out.
    Ok,
    /// The object is back and the span had nothing to give before (it may change lists).
    WasFull,
    /// The object is back and no object of the span is out any more.
    Empty,
}

impl Span {
    /// One past the last byte of the span.
    #[inline]
    pub fn limit(&self) -> usize {
        self.start + self.npages * PAGE_SIZE
    }

    /// Makes a span of `npages` pages at `start` hold objects of class `c`, with no owner.
    pub fn init_small(&mut self, c: usize, k: &Class) {
        self.state = State::Small;
        self.class = c as u8;
        self.bin = (c * BIN_STRIDE) as u16;
        self.size = k.size;
        self.magic = k.magic;
        (self.mul_check, self.obj_limit) = object_test(k.size as u64, k.objects as u64);
        self.used = 0;
        self.free = ptr::null_mut();
        self.bump = self.start;
        self.end = self.start + k.objects as usize * k.size as usize;
        self.listed = [0; MAX_OBJECTS / 64];
        self.in_full = false;
        self.kept = false;
        self.owner.store(0, Ordering::Relaxed);
    }

    /// Index of the object at `addr` if `addr` is exactly the start of one; `None` for an interior
    /// or out-of-range pointer. Meaningful only for a small span.
    #[inline(always)]
    pub fn object_index(&self, addr: usize) -> Option<usize> {
        let off = addr.wrapping_sub(self.start);
        let idx = ((off as u64 * self.magic as u64) >> 32) as usize;
        if addr < self.end && idx * self.size as usize == off {
            Some(idx)
        } else {
            None
        }
    }

    /// Whether `addr` is exactly the start of an object of this small span; false for every
    /// address of a free or large span (their `obj_limit` is 0). One multiply and one compare:
    /// see [`object_test`].
    ///
    /// The caller found the span through the page map, so `addr` lies in one of its pages.
    #[inline(always)]
    pub fn is_object_start(&self, addr: usize) -> bool {
        debug_assert!(
            self.obj_limit == 0 || (addr >= self.start && addr < self.limit()),
            "is_object_start outside the span"
        );
        let off = addr.wrapping_sub(self.start) as u64;
        off.wrapping_mul(self.mul_check) < self.obj_limit
    }

    /// Makes the span hold no objects for `free`'s test (free and large spans).
    #[inline]
    pub fn clear_objects(&mut self) {
        self.end = 0;
        self.obj_limit = 0;
    }

    /// Index of object `p`, known to be an object start of this span.
    #[inline(always)]
    pub fn index_of(&self, p: *mut u8) -> usize {
        (((p as usize - self.start) as u64 * self.magic as u64) >> 32) as usize
    }

    /// Whether a small span has an object to give.
    #[inline]
    pub fn has_free(&self) -> bool {
        !self.free.is_null() || self.bump < self.end
    }

    /// Whether object `i` is on the span's free list.
    #[inline]
    pub fn is_listed(&self, i: usize) -> bool {
        self.listed
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Puts object `i` (at `p`) back on the free list, writing `key` into its word 1. Aborts on a
    /// double free (the object is already on the list).
    ///
    /// # Safety
    /// `p` is object `i` of this small span and the caller may change the span (owner, or class
    /// lock while unowned).
    #[inline(always)]
    pub unsafe fn push_free(&mut self, p: *mut u8, i: usize, key: usize) -> Pushed {
        debug_assert!(i < MAX_OBJECTS);
        // SAFETY: `i` is the index of an object of this span (caller), below `MAX_OBJECTS`.
        let word = unsafe { self.listed.get_unchecked_mut(i / 64) };
        let bit = 1u64 << (i % 64);
        if *word & bit != 0 {
            crate::fatal::fatal("free", "double free", p as usize);
        }
        *word |= bit;
        let was = self.free;
        // SAFETY: `p` is a free object of at least 16 bytes (caller).
        unsafe {
            *(p as *mut *mut u8) = was;
            *(p as *mut usize).add(1) = key;
        }
        self.free = p;
        let (used, underflow) = self.used.overflowing_sub(1);
        if underflow {
            crate::fatal::fatal("free", "corrupted span", p as usize);
        }
        self.used = used;
        if used == 0 {
            Pushed::Empty
        } else if was.is_null() && self.bump >= self.end {
            Pushed::WasFull
        } else {
            Pushed::Ok
        }
    }

    /// Moves the whole free list out (all its objects become used): `(head, count)`. The list
    /// keeps its links; the bitmap is cleared a word at a time.
    pub fn take_all(&mut self) -> (*mut u8, usize) {
        let head = self.free;
        if head.is_null() {
            return (head, 0);
        }
        let words = self.objects().div_ceil(64).min(self.listed.len());
        let mut n = 0;
        for w in &mut self.listed[..words] {
            n += w.count_ones() as usize;
            *w = 0;
        }
        self.free = ptr::null_mut();
        self.used += n as u32;
        (head, n)
    }

    /// Pops one object off the free list (null if empty).
    pub fn pop_one(&mut self) -> *mut u8 {
        let p = self.free;
        if !p.is_null() {
            let i = self.index_of(p);
            // SAFETY: objects on the list hold the next link in word 0.
            self.free = unsafe { *(p as *mut *mut u8) };
            if let Some(w) = self.listed.get_mut(i / 64) {
                *w &= !(1u64 << (i % 64));
            }
            self.used += 1;
        }
        p
    }

    /// Carves up to `n` never-used objects, pushing each onto the list at `*head` (links in word
    /// 0, `key` in word 1, as on any free list). Returns how many.
    ///
    /// # Safety
    /// The caller may change the span; `[bump, end)` is memory of the span nobody uses.
    pub unsafe fn carve(&mut self, n: usize, head: &mut *mut u8, key: usize) -> usize {
        let size = (self.size as usize).max(1);
        let k = ((self.end - self.bump) / size).min(n);
        let mut p = self.bump;
        let mut chain = *head;
        for _ in 0..k {
            // SAFETY: `[bump, end)` holds never-used objects of this span (at least 16 bytes).
            unsafe {
                *(p as *mut *mut u8) = chain;
                *(p as *mut usize).add(1) = key;
            }
            chain = p as *mut u8;
            p += size;
        }
        // The span's books first, the list last: a fork between the two (the child cannot see
        // this thread finish) then leaks the carved objects rather than hand them out twice.
        self.bump = p;
        self.used += k as u32;
        *head = chain;
        k
    }

    /// Objects the span holds.
    #[inline]
    pub fn objects(&self) -> usize {
        (self.end - self.start) / (self.size as usize).max(1)
    }

    /// Makes the span's bookkeeping agree with its free list again: the bitmap is rebuilt from the
    /// list (walked at most `objects` steps; a cut-off list is ended there) and `used` recomputed.
    /// For a forked child, where the span's owner may have been stopped halfway through a push.
    ///
    /// # Safety
    /// Nothing else uses the span.
    pub unsafe fn rebuild(&mut self) {
        let objects = self.objects();
        self.listed = [0; MAX_OBJECTS / 64];
        let mut n = 0;
        let mut p = self.free;
        let mut last: *mut u8 = ptr::null_mut();
        while !p.is_null() {
            match self.object_index(p as usize) {
                Some(i) if n < objects && !self.is_listed(i) => {
                    self.listed[i / 64] |= 1 << (i % 64);
                    n += 1;
                    last = p;
                    // SAFETY: list entries are free objects holding the next link.
                    p = unsafe { *(p as *mut *mut u8) };
                }
                _ => {
                    // A torn link: end the list before it.
                    if last.is_null() {
                        self.free = ptr::null_mut();
                    } else {
                        // SAFETY: `last` is a listed object of this span.
                        unsafe { *(last as *mut *mut u8) = ptr::null_mut() };
                    }
                    break;
                }
            }
        }
        let carved = (self.bump - self.start) / (self.size as usize).max(1);
        self.used = carved.saturating_sub(n) as u32;
    }

    /// Checks the invariants of a small span (O(objects); for tests and `expensive-checks`).
    /// The caller may read the span (owner, or class lock while unowned).
    pub fn check(&self) {
        assert_eq!(self.state, State::Small);
        let objects = self.objects();
        let popcount: usize = self.listed.iter().map(|w| w.count_ones() as usize).sum();
        let mut free_count = 0;
        let mut p = self.free;
        while !p.is_null() {
            let i = self
                .object_index(p as usize)
                .expect("free-list entry is not an object");
            assert!(self.is_listed(i), "free-list object not marked listed");
            free_count += 1;
            assert!(free_count <= objects, "free list cycles");
            // SAFETY: list entries are free objects of this span holding the next link.
            p = unsafe { *(p as *mut *mut u8) };
        }
        assert_eq!(
            popcount, free_count,
            "listed bitmap disagrees with the free list"
        );
        let never = (self.end - self.bump) / self.size as usize;
        assert_eq!(self.used as usize + free_count + never, objects);
        assert!(self.end <= self.limit());
    }
}

/// The multiplier `m` and limit `t` of the division-free object test for objects of `size` bytes
/// (at most 32 KiB), `objects` of them: for every offset `off` inside a span's pages (below
/// 2^32), `off * m mod 2^64 < t` exactly when `off = k * size` with `k < objects`.
///
/// Why: with `m = floor(2^64 / size) + 1` (Lemire, Kaser & Kurz 2019, for `size` not a power of
/// two) a multiple `k * size` maps to `k * step`, `step = size * m mod 2^64` in `[1, size]`, while
/// any other offset maps to at least `m > 2^49`; for `size = 2^s` the multiplier `2^(64-s) + 1`
/// maps `k * size` to itself and any other offset to at least `2^(64-s)`. So `t = objects * step`
/// bounds the index too, and the test needs neither a division nor a separate range check.
/// The unit test below checks every offset of every class.
pub const fn object_test(size: u64, objects: u64) -> (u64, u64) {
    // Classes start at 16 bytes; a size below 2 would need a shift by 64.
    let size = if size < 2 { 2 } else { size };
    let m = if size.is_power_of_two() {
        (1u64 << (64 - size.trailing_zeros())).wrapping_add(1)
    } else {
        u64::MAX / size + 1
    };
    (m, objects * size.wrapping_mul(m))
}

/// An intrusive doubly-linked list of spans.
pub struct SpanList {
    /// First span, or null.
    pub head: *mut Span,
    /// Last span, or null.
    pub tail: *mut Span,
    /// Number of spans.
    pub len: usize,
}

impl SpanList {
    /// An empty list.
    pub const fn new() -> Self {
        SpanList {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Pushes `s` at the front.
    ///
    /// # Safety
    /// `s` is a valid span on no list.
    pub unsafe fn push(&mut self, s: *mut Span) {
        // SAFETY: the caller guarantees `s` is valid and unlinked; `head` is valid if non-null.
        unsafe {
            debug_assert!(!(*s).linked);
            (*s).prev = ptr::null_mut();
            (*s).next = self.head;
            if self.head.is_null() {
                self.tail = s;
            } else {
                (*self.head).prev = s;
            }
            (*s).linked = true;
        }
        self.head = s;
        self.len += 1;
    }

    /// Pushes `s` at the back.
    ///
    /// # Safety
    /// `s` is a valid span on no list.
    pub unsafe fn push_back(&mut self, s: *mut Span) {
        // SAFETY: the caller guarantees `s` is valid and unlinked; `tail` is valid if non-null.
        unsafe {
            debug_assert!(!(*s).linked);
            (*s).next = ptr::null_mut();
            (*s).prev = self.tail;
            if self.tail.is_null() {
                self.head = s;
            } else {
                (*self.tail).next = s;
            }
            (*s).linked = true;
        }
        self.tail = s;
        self.len += 1;
    }

    /// Unlinks `s`.
    ///
    /// # Safety
    /// `s` is on this list.
    pub unsafe fn remove(&mut self, s: *mut Span) {
        // SAFETY: `s` and its neighbours are valid members of this list.
        unsafe {
            debug_assert!((*s).linked);
            if (*s).prev.is_null() {
                self.head = (*s).next;
            } else {
                (*(*s).prev).next = (*s).next;
            }
            if (*s).next.is_null() {
                self.tail = (*s).prev;
            } else {
                (*(*s).next).prev = (*s).prev;
            }
            (*s).next = ptr::null_mut();
            (*s).prev = ptr::null_mut();
            (*s).linked = false;
        }
        self.len -= 1;
    }
}

impl Default for SpanList {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::{class_info, NUM_CLASSES};

    fn blank(start: usize, npages: usize) -> Span {
        // SAFETY: every field of `Span` is valid when zeroed (integers, raw pointers, bools,
        // `State::Free` is 0, atomics).
        let mut s: Span = unsafe { core::mem::zeroed() };
        s.start = start;
        s.npages = npages;
        s
    }

    /// For every class, every address of its span's pages is accepted by the
    /// division-free check exactly when it starts an object, as plain division says.
    #[test]
    fn object_start_check_agrees_with_division() {
        let start = 0x7f00_0000_0000usize;
        for c in 1..NUM_CLASSES {
            let k = class_info(c);
            let mut s = blank(start, k.pages as usize);
            s.init_small(c, k);
            let size = k.size as usize;
            for off in 0..s.npages * PAGE_SIZE {
                let a = start + off;
                let want = off % size == 0 && off / size < k.objects as usize;
                assert_eq!(s.is_object_start(a), want, "class {c} offset {off}");
                assert_eq!(
                    s.object_index(a),
                    want.then_some(off / size),
                    "class {c} offset {off}"
                );
            }
        }
    }

    /// Free and large spans have `obj_limit == 0`, so no address of theirs passes.
    #[test]
    fn nothing_passes_for_free_or_large_spans() {
        let start = 0x7f00_0000_0000usize;
        let k = class_info(1);
        let mut s = blank(start, k.pages as usize);
        assert!(!s.is_object_start(start), "a blank span accepts nothing");
        s.init_small(1, k);
        assert!(s.is_object_start(start));
        s.clear_objects();
        for off in (0..PAGE_SIZE).step_by(16) {
            assert!(
                !s.is_object_start(start + off),
                "a cleared span accepts nothing"
            );
        }
    }

    /// The object test's limit stays far below what any non-multiple maps to, for every class
    /// (the margin the proof in `object_test` relies on).
    #[test]
    fn object_test_limits_are_small() {
        for c in 1..NUM_CLASSES {
            let k = class_info(c);
            let (m, t) = object_test(k.size as u64, k.objects as u64);
            assert!(t >= k.objects as u64, "class {c}: every index has a step");
            assert!(t <= k.objects as u64 * k.size as u64, "class {c}");
            assert!(m > 1 << 49, "class {c}: multiplier {m}");
        }
    }
}
