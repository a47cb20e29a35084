//! Spans: runs of pages. A span is free (in the page heap), holds objects of one size class
//! (small), or holds one large object. See the crate docs for where spans sit in the layers.
//!
//! Invariants of a small span (fields under its class's central lock; `start`, `class`, `size`,
//! `magic` are immutable while the span is small and are read without a lock by `free`):
//! - objects are `start + i * size` for `i < objects`;
//! - `out` bit `i` is set ⇔ object `i` has left the span (it is in a thread cache or with the user);
//! - `used == popcount(out)`, and `used + free_count + (end - bump) / size == objects`, where
//!   `free_count` is the length of the span-local list `free` and `[bump, end)` holds objects never
//!   handed out yet (carved lazily, so a fresh span touches no memory);
//! - the span is on its central `nonempty` list ⇔ it has an object to give (`free` non-null or
//!   `bump < end`).
//!
//! Free spans (page heap lock): `zeroed` ⇒ every page reads as zero; `dirty` ≤ `npages` bounds the
//! pages that may be resident (0 after `madvise` gave them back, or for never-touched arena pages).

use crate::config::PAGE_SIZE;
use crate::size_class::{Class, MAX_OBJECTS};
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
#[repr(C)]
pub struct Span {
    /// Link in a [`SpanList`] (central nonempty list, or a page heap free list).
    pub next: *mut Span,
    /// Link in a [`SpanList`].
    pub prev: *mut Span,
    /// Address of the first page.
    pub start: usize,
    /// Number of pages.
    pub npages: usize,
    /// Size class (0 unless small).
    pub class: u8,
    /// See [`State`].
    pub state: State,
    /// Free span: every page is known to read as zero.
    pub zeroed: bool,
    /// Free span: pages that may still be resident (an upper bound; 0 once given back).
    pub dirty: usize,
    /// Whether the span is linked on some list.
    pub linked: bool,
    /// Small: object size; `(offset * magic) >> 32` is the object index of an offset.
    pub size: u32,
    /// Small: see `size`.
    pub magic: u32,
    /// Small: objects that have left the span.
    pub used: u32,
    /// Small: span-local free list of returned objects.
    pub free: *mut u8,
    /// Small: next never-used object.
    pub bump: usize,
    /// Small: end of the object area (`start + objects * size`).
    pub end: usize,
    /// Large: the size the user asked for (for statistics).
    pub requested: usize,
    /// Free: when the run was last freed (milliseconds, coarse monotonic clock), for the scavenger.
    pub freed_at: u64,
    /// Small: id of the thread cache the span's objects are handed to (0: none). Written under the
    /// class lock by `central::fetch`; read without it by `free` to tell a local free from a
    /// remote one (a stale read only picks the slower of two correct paths).
    pub owner: AtomicU32,
    /// Small: bit `i` set ⇔ object `i` is out of the span.
    pub out: [u64; MAX_OBJECTS / 64],
}

impl Span {
    /// One past the last byte of the span.
    #[inline]
    pub fn limit(&self) -> usize {
        self.start + self.npages * PAGE_SIZE
    }

    /// Makes a span of `npages` pages at `start` hold objects of class `c`.
    pub fn init_small(&mut self, c: usize, k: &Class) {
        self.state = State::Small;
        self.class = c as u8;
        self.size = k.size;
        self.magic = k.magic;
        self.used = 0;
        self.free = ptr::null_mut();
        self.bump = self.start;
        self.end = self.start + k.objects as usize * k.size as usize;
        self.out = [0; MAX_OBJECTS / 64];
        self.owner.store(0, Ordering::Relaxed);
    }

    /// Index of the object at `addr` if `addr` is exactly the start of one; `None` for an interior
    /// or out-of-range pointer.
    #[inline]
    pub fn object_index(&self, addr: usize) -> Option<usize> {
        let off = addr.wrapping_sub(self.start);
        let idx = ((off as u64 * self.magic as u64) >> 32) as usize;
        if addr < self.end && idx * self.size as usize == off {
            Some(idx)
        } else {
            None
        }
    }

    /// Whether a small span has an object to give.
    #[inline]
    pub fn has_free(&self) -> bool {
        !self.free.is_null() || self.bump < self.end
    }

    /// Takes up to `n` objects out of a small span, pushing each onto the list at `*head` (links in
    /// word 0). Returns how many. Never-used objects are carved in bulk (their bitmap bits set a
    /// word at a time), so a fresh span hands out a batch in a few instructions per object.
    ///
    /// # Safety
    /// The span is small and its objects that are not out are ours to link.
    pub unsafe fn take_batch(&mut self, n: usize, head: &mut *mut u8) -> usize {
        let mut got = 0;
        while got < n && !self.free.is_null() {
            let p = self.free;
            // SAFETY: objects on the span list hold the next one's address in word 0.
            unsafe {
                self.free = *(p as *mut *mut u8);
                *(p as *mut *mut u8) = *head;
            }
            *head = p;
            let i = (((p as usize - self.start) as u64 * self.magic as u64) >> 32) as usize;
            debug_assert!(!self.is_out(i));
            set_bits(&mut self.out, i, i + 1);
            got += 1;
        }
        let size = (self.size as usize).max(1);
        let k = ((self.end - self.bump) / size).min(n - got);
        if k > 0 {
            let first = (((self.bump - self.start) as u64 * self.magic as u64) >> 32) as usize;
            let mut p = self.bump;
            for _ in 0..k {
                // SAFETY: `[bump, end)` holds never-used objects of this span.
                unsafe { *(p as *mut *mut u8) = *head };
                *head = p as *mut u8;
                p += size;
            }
            self.bump = p;
            set_bits(&mut self.out, first, first + k);
            got += k;
        }
        self.used += got as u32;
        got
    }

    /// Whether object `i` is out of the span.
    #[inline]
    pub fn is_out(&self, i: usize) -> bool {
        self.out
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Checks the invariants of a small span (O(objects); for tests and `expensive-checks`).
    pub fn check(&self) {
        assert_eq!(self.state, State::Small);
        let objects = (self.end - self.start) / self.size as usize;
        let popcount: u32 = self.out.iter().map(|w| w.count_ones()).sum();
        assert_eq!(popcount, self.used, "out bitmap disagrees with used");
        let mut free_count = 0;
        let mut p = self.free;
        while !p.is_null() {
            let i = self
                .object_index(p as usize)
                .expect("free-list entry is not an object");
            assert!(!self.is_out(i), "free-list object marked out");
            free_count += 1;
            assert!(free_count <= objects, "free list cycles");
            // SAFETY: list entries are free objects of this span holding the next link.
            p = unsafe { *(p as *mut *mut u8) };
        }
        let never = (self.end - self.bump) / self.size as usize;
        assert_eq!(self.used as usize + free_count + never, objects);
        assert!(self.end <= self.limit());
    }
}

/// Sets bits `[from, to)` of `bits`.
fn set_bits(bits: &mut [u64], from: usize, to: usize) {
    let mut i = from;
    while i < to {
        let w = i / 64;
        let lo = i % 64;
        let hi = (to - w * 64).min(64);
        let mask = if hi - lo == 64 {
            !0
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        };
        let Some(word) = bits.get_mut(w) else {
            crate::fatal::fatal("segfit", "corrupted span bitmap", i)
        };
        debug_assert!(*word & mask == 0);
        *word |= mask;
        i = w * 64 + hi;
    }
}

/// An intrusive doubly-linked list of spans.
pub struct SpanList {
    /// First span, or null.
    pub head: *mut Span,
    /// Number of spans.
    pub len: usize,
}

impl SpanList {
    /// An empty list.
    pub const fn new() -> Self {
        SpanList {
            head: ptr::null_mut(),
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
            if !self.head.is_null() {
                (*self.head).prev = s;
            }
            (*s).linked = true;
        }
        self.head = s;
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
            if !(*s).next.is_null() {
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
