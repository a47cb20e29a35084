//! Central lists: per size class, the spans that have objects to give (Go's `mcentral`).
//!
//! Thread caches come here in batches: [`fetch`] moves up to a batch of objects from spans into a
//! cache's list, taking a new span from the page heap when no span has any; [`release`] takes a
//! batch back, returning each object to its span, and gives a span whose objects are all back to
//! the page heap. A batch costs one lock round trip, so a cross-thread free (which waits on the
//! freeing thread's remote list) costs a fraction of an atomic operation on average.
//!
//! This is where small double frees are caught for certain: each span's `out` bitmap says which of
//! its objects are out, and returning an object that is not out is fatal.
//!
//! Invariants (under the class's lock): a small span of class `c` is on `CENTRAL[c].nonempty` ⇔ it
//! has an object to give; see `span.rs` for the per-span equations. Lock order: central → heap.

use crate::arena;
use crate::cache;
use crate::fatal::fatal;
use crate::lock::Lock;
use crate::page_heap;
use crate::size_class::NUM_CLASSES;
use crate::span::{Span, SpanList, State};
use core::cell::UnsafeCell;
use core::sync::atomic::Ordering;

/// Counters of one class (under its lock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounters {
    /// Objects handed to thread caches (or dead threads) since start.
    pub fetched: u64,
    /// Objects given back since start.
    pub released: u64,
    /// Batches fetched.
    pub fetches: u64,
    /// Batches released.
    pub releases: u64,
    /// Spans currently in use by this class.
    pub spans: u64,
    /// Spans allocated from the page heap since start.
    pub spans_allocated: u64,
}

struct Inner {
    nonempty: SpanList,
    /// Completely free spans kept on `nonempty` (at most [`KEEP_EMPTY`]), unowned, so that the
    /// next thread needing a span of this class does not go through the page heap.
    empty: usize,
    counters: ClassCounters,
}

/// Completely free spans a class keeps instead of returning them to the page heap at once.
const KEEP_EMPTY: usize = 1;

/// The central list of one class.
#[repr(align(64))]
pub struct Central {
    lock: Lock,
    inner: UnsafeCell<Inner>,
}

// SAFETY: `inner` is only accessed with `lock` held.
unsafe impl Sync for Central {}

/// One central list per class (index 0 unused).
pub static CENTRAL: [Central; NUM_CLASSES] = [const {
    Central {
        lock: Lock::new(),
        inner: UnsafeCell::new(Inner {
            nonempty: SpanList::new(),
            empty: 0,
            counters: ClassCounters {
                fetched: 0,
                released: 0,
                fetches: 0,
                releases: 0,
                spans: 0,
                spans_allocated: 0,
            },
        }),
    }
}; NUM_CLASSES];

/// The central list of class `c`; an index out of range (corrupted metadata) aborts with one line.
#[inline]
fn central(c: usize) -> &'static Central {
    match CENTRAL.get(c) {
        Some(k) => k,
        None => crate::fatal::fatal("segfit", "corrupted size class", c),
    }
}

impl Central {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        self.lock.lock();
        // SAFETY: the lock is held.
        let r = f(unsafe { &mut *self.inner.get() });
        self.lock.unlock();
        r
    }

    /// The lock (for fork handling).
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> ClassCounters {
        self.with(|i| i.counters)
    }
}

/// Pushes up to `n` objects of class `c` onto the list at `*head` (links in each object's first
/// word) for the thread cache with owner id `me` (0: a thread without a cache). Returns how many;
/// 0 means out of memory.
///
/// Spans belong to the thread cache that last took objects from them (`Span::owner`): a thread
/// prefers, among the first few spans of the list, one of its own, one nobody owns, or one whose
/// owner has exited; only if all of those belong to other live threads does it take over the
/// first (a new span per thread and class would cost memory and page heap work). So threads
/// mostly get objects on cache lines of their own, and a span's metadata stays with one thread.
pub fn fetch(c: usize, n: usize, head: &mut *mut u8, me: u32) -> usize {
    central(c).with(|inner| {
        let mut got = 0;
        while got < n {
            let mut s = pick(inner, me);
            if s.is_null() {
                s = page_heap::with(|h| h.alloc_small(c));
                if s.is_null() {
                    break;
                }
                inner.counters.spans += 1;
                inner.counters.spans_allocated += 1;
                // SAFETY: a fresh small span, on no list.
                unsafe { inner.nonempty.push(s) };
            }
            // SAFETY: spans on the nonempty list are valid small spans of class `c` with an
            // object to give; the objects they give are ours to link.
            unsafe {
                let span = &mut *s;
                if me != 0 {
                    span.owner.store(me, Ordering::Relaxed);
                }
                if span.used == 0 && !span.free.is_null() {
                    // A kept empty span (a fresh one has no free list yet).
                    inner.empty -= 1;
                }
                got += span.take_batch(n - got, head);
                if !span.has_free() {
                    inner.nonempty.remove(s);
                }
                #[cfg(feature = "expensive-checks")]
                span.check();
            }
        }
        inner.counters.fetched += got as u64;
        inner.counters.fetches += 1;
        got
    })
}

/// How many spans of the nonempty list `fetch` looks at for one it may take.
const PICK_DEPTH: usize = 8;

/// The span of the nonempty list the cache with id `me` should take objects from (null if the
/// list is empty).
fn pick(inner: &Inner, me: u32) -> *mut Span {
    let mut s = inner.nonempty.head;
    if me == 0 {
        return s;
    }
    for _ in 0..PICK_DEPTH {
        if s.is_null() {
            break;
        }
        // SAFETY: spans on the list are valid; `owner` is an atomic.
        let (owner, next) = unsafe { ((*s).owner.load(Ordering::Relaxed), (*s).next) };
        if owner == me || owner == 0 || !cache::is_live(owner) {
            return s;
        }
        s = next;
    }
    // Only other live threads' spans near the front: share the first rather than start a new
    // span (a new span per thread and class costs memory and page heap work).
    inner.nonempty.head
}

/// Returns `count` objects of class `c`, linked from `head` through their first words.
///
/// # Safety
/// Each object was handed out for class `c` and is no longer used; `count` matches the list.
pub unsafe fn release(c: usize, head: *mut u8, count: usize) {
    central(c).with(|inner| {
        // Objects freed together mostly share a span, so the loop works on one span at a time
        // with its list head and count in registers, and settles the span's list membership when
        // it moves on (`Returning::finish`).
        let mut cur = Returning::NONE;
        let mut p = head;
        for _ in 0..count {
            // SAFETY: the caller guarantees `p` is a freed object of class `c`.
            let next = unsafe { *(p as *mut *mut u8) };
            let a = p as usize;
            if a.wrapping_sub(cur.start) >= cur.len {
                // SAFETY: `cur` is NONE or a span loaded below.
                unsafe { cur.finish(inner) };
                let s = arena::span_of(a);
                // SAFETY: page map entries are valid spans.
                if s.is_null() || unsafe { (*s).state != State::Small || (*s).class as usize != c }
                {
                    fatal("free", "corrupted thread cache entry", a);
                }
                // SAFETY: a live small span of class `c`; we hold its class lock.
                cur = unsafe { Returning::load(s) };
            }
            let off = a - cur.start;
            let i = ((off as u64 * cur.magic as u64) >> 32) as usize;
            if i * cur.size != off {
                fatal("free", "corrupted thread cache entry", a);
            }
            // SAFETY: `cur.span` is live and locked.
            let Some(word) = (unsafe { (*cur.span).out.get_mut(i / 64) }) else {
                fatal("free", "corrupted thread cache entry", a)
            };
            let bit = 1u64 << (i % 64);
            if *word & bit == 0 {
                fatal("free", "double free", a);
            }
            *word &= !bit;
            // SAFETY: the object is free again; link it into the span's list.
            unsafe { *(p as *mut *mut u8) = cur.free };
            cur.free = p;
            cur.used -= 1;
            p = next;
        }
        // SAFETY: as above.
        unsafe { cur.finish(inner) };
        inner.counters.released += count as u64;
        inner.counters.releases += 1;
    })
}

/// The span `release` is returning objects to, with its hot fields held locally.
struct Returning {
    span: *mut Span,
    start: usize,
    len: usize,
    size: usize,
    magic: u32,
    free: *mut u8,
    used: u32,
    was_full: bool,
}

impl Returning {
    const NONE: Returning = Returning {
        span: core::ptr::null_mut(),
        start: 0,
        len: 0,
        size: 1,
        magic: 0,
        free: core::ptr::null_mut(),
        used: 0,
        was_full: false,
    };

    /// # Safety
    /// `s` is a live small span whose class lock is held.
    unsafe fn load(s: *mut Span) -> Returning {
        // SAFETY: caller's contract.
        let span = unsafe { &*s };
        Returning {
            span: s,
            start: span.start,
            len: span.end - span.start,
            size: span.size as usize,
            magic: span.magic,
            free: span.free,
            used: span.used,
            was_full: !span.has_free(),
        }
    }

    /// Writes the fields back and fixes the span's list membership: a span that was full goes on
    /// the nonempty list, a span with no object out goes back to the page heap.
    ///
    /// # Safety
    /// `self` is NONE or was loaded from a live span whose class lock is still held.
    unsafe fn finish(&mut self, inner: &mut Inner) {
        let s = self.span;
        if s.is_null() {
            return;
        }
        // SAFETY: caller's contract.
        unsafe {
            (*s).free = self.free;
            (*s).used = self.used;
            if self.used == 0 && inner.empty < KEEP_EMPTY {
                // Keep it for the next thread that needs a span of this class.
                if self.was_full {
                    inner.nonempty.push(s);
                }
                (*s).owner.store(0, Ordering::Relaxed);
                inner.empty += 1;
            } else if self.used == 0 {
                if !self.was_full {
                    inner.nonempty.remove(s);
                }
                inner.counters.spans -= 1;
                page_heap::with(|h| h.free_small(s));
            } else {
                if self.was_full {
                    inner.nonempty.push(s);
                }
                #[cfg(feature = "expensive-checks")]
                (*s).check();
            }
        }
        *self = Returning::NONE;
    }
}

/// Whether object `p` of small span `s` is out of its span (under the class lock): `false` means
/// a free of `p` is a double free.
///
/// # Safety
/// `s` is the small span of `p` and `p` is an object start.
pub unsafe fn is_out(s: *mut Span, p: *mut u8) -> bool {
    // SAFETY: the caller guarantees `s` is a small span (its class is immutable while small).
    let c = unsafe { (*s).class as usize };
    central(c).with(|_| {
        // SAFETY: the class lock is held, so the bitmap is stable; `s` may have been freed and
        // reused meanwhile, so re-check that it still is a small span of class `c`.
        unsafe {
            if (*s).state != State::Small || (*s).class as usize != c {
                return false;
            }
            match (*s).object_index(p as usize) {
                Some(i) => (*s).is_out(i),
                None => false,
            }
        }
    })
}

/// Gives every kept empty span back to the page heap (for `collect`).
pub fn release_empty_spans() {
    for central in CENTRAL.iter().skip(1) {
        central.with(|inner| {
            let mut s = inner.nonempty.head;
            while !s.is_null() && inner.empty > 0 {
                // SAFETY: spans on the list are valid small spans of this class.
                unsafe {
                    let next = (*s).next;
                    if (*s).used == 0 {
                        inner.nonempty.remove(s);
                        inner.empty -= 1;
                        inner.counters.spans -= 1;
                        page_heap::with(|h| h.free_small(s));
                    }
                    s = next;
                }
            }
        });
    }
}
