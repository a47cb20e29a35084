//! Central lists: per size class, the spans no thread owns (Go's `mcentral`).
//!
//! A thread cache takes a span of a class for itself with [`take_span`] (an unowned span with
//! objects to give, else a fresh one from the page heap) and then allocates from it and frees into
//! it without any lock. It gives a span back with [`abandon`] when the span has no object out, and
//! all of them at thread exit. Objects of unowned spans come back through [`release`], in
//! batches. Threads without an owner id (dead threads, or past `MAX_IDS` live ones) allocate
//! one object at a time with [`alloc_one`].
//!
//! Invariants (under the class's lock): an unowned small span of class `c` is on
//! `CENTRAL[c].nonempty` ⇔ it has an object to give; a span's `owner` changes only under its class
//! lock; see `span.rs` for the per-span equations. Lock order: central → heap.

use crate::arena;
use crate::cache;
use crate::fatal::fatal;
use crate::lock::Lock;
use crate::page_heap;
use crate::size_class::NUM_CLASSES;
use crate::span::{Pushed, Span, SpanList, State};
use core::cell::UnsafeCell;
use core::sync::atomic::Ordering;

/// Counters of one class (under its lock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounters {
    /// Spans currently in use by this class (owned or not).
    pub spans: u64,
    /// Spans allocated from the page heap since start.
    pub spans_allocated: u64,
    /// Spans handed to thread caches since start.
    pub spans_taken: u64,
    /// Spans given back by thread caches since start.
    pub spans_abandoned: u64,
    /// Objects returned to unowned spans since start.
    pub released: u64,
}

/// Empty spans a class's central list keeps (see `Inner::kept`): one, and more while they hold
/// at most `KEPT_BYTES` in all, up to `MAX_KEPT`.
const MAX_KEPT: u32 = 4;
/// See `MAX_KEPT`.
const KEPT_BYTES: usize = 64 << 10;

struct Inner {
    nonempty: SpanList,
    /// Unowned spans with no object out kept on `nonempty` (their `kept` flag set), at most
    /// `MAX_KEPT`, so that the next threads needing a span of this class do not go through the
    /// page heap (short-lived threads give all their spans back at exit).
    kept: u32,
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
            kept: 0,
            counters: ClassCounters {
                spans: 0,
                spans_allocated: 0,
                spans_taken: 0,
                spans_abandoned: 0,
                released: 0,
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

impl Inner {
    /// An unowned span with an object to give, still on the nonempty list, or a fresh one from
    /// the page heap (on no list). Null if out of memory.
    fn any_span(&mut self, c: usize) -> *mut Span {
        let s = self.nonempty.head;
        if !s.is_null() {
            // SAFETY: listed spans are valid unowned spans of this class (lock held).
            unsafe {
                if (*s).kept {
                    (*s).kept = false;
                    self.kept -= 1;
                }
            }
            return s;
        }
        let s = page_heap::with(|h| h.alloc_small(c));
        if !s.is_null() {
            self.counters.spans += 1;
            self.counters.spans_allocated += 1;
        }
        s
    }

    /// Returns unowned span `s`, which has no object out, to the page heap (off the list first).
    ///
    /// # Safety
    /// `s` is an unowned small span of this class with `used == 0`, not kept; the lock is held.
    unsafe fn give_back(&mut self, s: *mut Span) {
        // SAFETY: caller's contract.
        unsafe {
            debug_assert!((*s).used == 0 && !(*s).kept);
            if (*s).linked {
                self.nonempty.remove(s);
            }
            self.counters.spans -= 1;
            page_heap::with(|h| h.free_small(s));
        }
    }

    /// Settles an unowned span's list membership after objects came back or left: listed iff it
    /// has an object to give; with no object out it is kept (see `MAX_KEPT`) or returned to
    /// the page heap.
    ///
    /// # Safety
    /// `s` is an unowned small span of this class; the lock is held.
    unsafe fn settle(&mut self, s: *mut Span) {
        // SAFETY: caller's contract.
        unsafe {
            let room = self.kept == 0
                || (self.kept < MAX_KEPT
                    && (self.kept as usize + 1) * (*s).npages * crate::config::PAGE_SIZE
                        <= KEPT_BYTES);
            if (*s).used == 0 && ((*s).kept || room) {
                // At the back: spans with objects out are used up first.
                if !(*s).kept {
                    (*s).kept = true;
                    self.kept += 1;
                    if (*s).linked {
                        self.nonempty.remove(s);
                    }
                }
                if !(*s).linked {
                    self.nonempty.push_back(s);
                }
            } else if (*s).used == 0 {
                self.give_back(s);
            } else if (*s).has_free() {
                if !(*s).linked {
                    self.nonempty.push(s);
                }
            } else if (*s).linked {
                self.nonempty.remove(s);
            }
        }
    }
}

/// A span of class `c` for the thread cache with owner id `me`: an unowned one with objects to
/// give, or a fresh one. The span is on no list and owned by `me`. Null if out of memory.
pub fn take_span(c: usize, me: u32) -> *mut Span {
    central(c).with(|inner| {
        let s = inner.any_span(c);
        if !s.is_null() {
            // SAFETY: a valid small span of class `c`, unowned; we hold the class lock.
            unsafe {
                if (*s).linked {
                    inner.nonempty.remove(s);
                }
                (*s).owner.store(me, Ordering::Relaxed);
                (*s).in_full = false;
            }
            inner.counters.spans_taken += 1;
        }
        s
    })
}

/// Gives an owned span back: it becomes unowned and is listed, kept or returned to the page heap.
///
/// # Safety
/// `s` is a small span of class `c` owned by the caller's thread cache, on none of its lists.
pub unsafe fn abandon(c: usize, s: *mut Span) {
    central(c).with(|inner| {
        // SAFETY: the caller owned `s` until now; under the class lock it becomes central's.
        unsafe {
            #[cfg(feature = "expensive-checks")]
            (*s).check();
            (*s).owner.store(0, Ordering::Relaxed);
            inner.settle(s);
        }
        inner.counters.spans_abandoned += 1;
    })
}

/// One object of class `c` for a thread without an owner id (taken from an unowned span, which
/// stays unowned). Null if out of memory.
pub fn alloc_one(c: usize) -> *mut u8 {
    central(c).with(|inner| {
        let s = inner.any_span(c);
        if s.is_null() {
            return s.cast();
        }
        // SAFETY: an unowned small span of class `c` with an object to give; lock held.
        unsafe {
            let mut p = (*s).pop_one();
            if p.is_null() {
                (*s).carve(1, &mut p, 0);
            }
            inner.settle(s);
            p
        }
    })
}

/// Returns `count` objects of class `c`, linked from `head` through their first words, whose spans
/// were unowned when the caller looked. An object whose span has been taken by a thread since goes
/// to that thread's inbox instead. Aborts on a double free (an object already on its span's list).
///
/// # Safety
/// Each object was handed out for class `c` and is no longer used; `count` matches the list.
pub unsafe fn release(c: usize, head: *mut u8, count: usize) {
    let key = cache::free_key();
    central(c).with(|inner| {
        let mut p = head;
        for _ in 0..count {
            // SAFETY: the caller guarantees `p` is a freed object of class `c`.
            let next = unsafe { *(p as *mut *mut u8) };
            let a = p as usize;
            let s = arena::span_of(a);
            // SAFETY: page map entries are valid spans; class and geometry are immutable while
            // the span is small.
            let i = match unsafe { s.as_ref() } {
                Some(span) if span.state == State::Small && span.class as usize == c => {
                    span.object_index(a)
                }
                _ => None,
            };
            let Some(i) = i else {
                fatal("free", "corrupted free list entry", a)
            };
            // SAFETY: `s` is a small span of class `c`; the class lock is held, so its owner is
            // stable and, if 0, its objects are ours to change.
            unsafe {
                let owner = (*s).owner.load(Ordering::Relaxed);
                if owner != 0 {
                    // The owner closes its inbox only after giving back all its spans, each
                    // under its class lock (held here): this span's owner's inbox is open.
                    *(p as *mut *mut u8) = core::ptr::null_mut();
                    if crate::owner::inbox_try_push(owner, p, p, 1, c).is_none() {
                        fatal("free", "corrupted span owner", a);
                    }
                } else {
                    if (*s).push_free(p, i, key) != Pushed::Ok || !(*s).linked {
                        inner.settle(s);
                    }
                    inner.counters.released += 1;
                }
            }
            p = next;
        }
    })
}

/// Whether object `p` of small span `s` is on its span's free list, if `s` is (still) an unowned
/// span of its class: `Some(true)` means a free of `p` is a double free. `None` if `s` has an
/// owner (only the owner can tell).
///
/// # Safety
/// `s` was the small span of `p` and `p` an object start of it.
pub unsafe fn is_listed(s: *mut Span, p: *mut u8) -> Option<bool> {
    // SAFETY: the caller guarantees `s` is a span record (records are never unmapped).
    let c = unsafe { (*s).class as usize };
    central(c).with(|_| {
        // SAFETY: the class lock is held; `s` may have changed meanwhile, so re-check it.
        unsafe {
            if (*s).state != State::Small
                || (*s).class as usize != c
                || (*s).owner.load(Ordering::Relaxed) != 0
            {
                return None;
            }
            (*s).object_index(p as usize).map(|i| (*s).is_listed(i))
        }
    })
}

/// Gives every kept empty span back to the page heap (for `collect`).
pub fn release_empty_spans() {
    for central in CENTRAL.iter().skip(1) {
        central.with(|inner| {
            let mut s = inner.nonempty.head;
            while inner.kept > 0 && !s.is_null() {
                // SAFETY: listed spans are valid unowned spans of this class (lock held); a kept
                // one has no object out.
                unsafe {
                    let next = (*s).next;
                    if (*s).kept {
                        (*s).kept = false;
                        inner.kept -= 1;
                        inner.give_back(s);
                    }
                    s = next;
                }
            }
        });
    }
}
