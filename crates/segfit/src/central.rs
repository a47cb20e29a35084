//! Central lists: per size class, the spans that have objects to give (Go's `mcentral`).
//!
//! Thread caches come here in batches: [`fetch`] moves up to a batch of objects from spans into a
//! cache's list, taking a new span from the page heap when no span has any; [`release`] takes a
//! batch back, returning each object to its span, and gives a span whose objects are all back to
//! the page heap. A batch costs one lock round trip, so a cross-thread free (which simply lands in
//! the freeing thread's cache) costs a fraction of an atomic operation on average.
//!
//! This is where small double frees are caught for certain: each span's `out` bitmap says which of
//! its objects are out, and returning an object that is not out is fatal.
//!
//! Invariants (under the class's lock): a small span of class `c` is on `CENTRAL[c].nonempty` ⇔ it
//! has an object to give; see `span.rs` for the per-span equations. Lock order: central → heap.

use crate::arena;
use crate::fatal::fatal;
use crate::lock::Lock;
use crate::page_heap;
use crate::size_class::NUM_CLASSES;
use crate::span::{Span, SpanList, State};
use core::cell::UnsafeCell;

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
    counters: ClassCounters,
}

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
/// word). Returns how many; 0 means out of memory.
pub fn fetch(c: usize, n: usize, head: &mut *mut u8) -> usize {
    CENTRAL[c].with(|inner| {
        let mut got = 0;
        while got < n {
            let mut s = inner.nonempty.head;
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
                while got < n {
                    let p = span.take();
                    if p.is_null() {
                        break;
                    }
                    *(p as *mut *mut u8) = *head;
                    *head = p;
                    got += 1;
                }
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

/// Returns `count` objects of class `c`, linked from `head` through their first words.
///
/// # Safety
/// Each object was handed out for class `c` and is no longer used; `count` matches the list.
pub unsafe fn release(c: usize, head: *mut u8, count: usize) {
    CENTRAL[c].with(|inner| {
        let mut p = head;
        for _ in 0..count {
            // SAFETY: the caller guarantees `p` is a freed object of class `c`.
            let next = unsafe { *(p as *mut *mut u8) };
            // SAFETY: as above.
            unsafe { put(inner, c, p) };
            p = next;
        }
        inner.counters.released += count as u64;
        inner.counters.releases += 1;
    })
}

/// Returns one object to its span, or aborts on a double free.
unsafe fn put(inner: &mut Inner, c: usize, p: *mut u8) {
    let s = arena::span_of(p as usize);
    // SAFETY: `p` was validated as an object of a small span of class `c` when it was freed, and
    // that span cannot have been freed since (the object was still out).
    unsafe {
        if s.is_null() || (*s).state != State::Small || (*s).class as usize != c {
            fatal("free", "corrupted thread cache entry", p as usize);
        }
        let span = &mut *s;
        let Some(i) = span.object_index(p as usize) else {
            fatal("free", "corrupted thread cache entry", p as usize)
        };
        let was_full = !span.has_free();
        if !span.put(p, i) {
            fatal("free", "double free", p as usize);
        }
        if span.used == 0 {
            if !was_full {
                inner.nonempty.remove(s);
            }
            inner.counters.spans -= 1;
            page_heap::with(|h| h.free_small(s));
        } else if was_full {
            inner.nonempty.push(s);
        }
        #[cfg(feature = "expensive-checks")]
        if span.used != 0 {
            span.check();
        }
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
    CENTRAL[c].with(|_| {
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

/// How many spans class `c` has on its nonempty list.
pub fn nonempty_len(c: usize) -> usize {
    CENTRAL[c].with(|i| i.nonempty.len)
}
