//! Cross-thread frees: a thread cache's remote lists, the owners' inboxes they are handed to,
//! and the threads that empty a stalled owner's inbox for it. See `cache` (the parent module) for
//! the fast paths that fill the remote lists, and `owner.rs` for the inboxes and the handshake.
//!
//! Invariants: an object on a remote list or in an inbox is free, carries the free key in word 1
//! (an inbox chain's head carries its length and class instead, see `inbox_push`) and counts as
//! `used` in its span; it reaches its span again only through its owner (its own drain, or a
//! helper holding the owner's id) or, for an unowned span, the central list. Called by the parent
//! module's slow paths (refill, `free_slow`, thread exit) and by `central` through `inbox_push`.

use super::{free_key, free_owned, span_of_object, with_registry, ThreadCache};
use crate::arena;
use crate::central;
use crate::fatal::fatal;
use crate::owner::{
    inbox_try_push, stalled, HelpGuard, CLOSED, INBOX, IN_TRANSIT, NO_ID, OWNER_TC, PENDING,
};
use crate::size_class::NUM_CLASSES;
use crate::span::Span;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

/// Minimum time between two `help_stalled_owners` scans (ms).
const SCAN_MS: u64 = 10;
static LAST_SCAN_MS: AtomicU64 = AtomicU64::new(0);

/// Called by a thread about to take a new span (its own have no free object): empties the inboxes
/// of stalled owners (see `STALLED_PENDING`), looking at most once per `SCAN_MS` for the process.
/// Must be called with no lock but the caller's own id lock held.
pub(super) fn help_stalled_owners(me: u32) {
    let now = crate::page_heap::now_ms();
    let last = LAST_SCAN_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) < SCAN_MS
        || LAST_SCAN_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    const MAX: usize = 8;
    let mut found = [0u32; MAX];
    let mut n = 0;
    with_registry(|r| {
        let mut tc = r.head;
        while !tc.is_null() && n < MAX {
            // SAFETY: registered caches are valid records; `id` is fixed while registered.
            let (id, next) = unsafe { ((*tc).id, (*tc).next) };
            if let Some(slot) = found.get_mut(n) {
                if id != me && id != NO_ID && stalled(id) {
                    *slot = id;
                    n += 1;
                }
            }
            tc = next;
        }
    });
    for &id in found.iter().take(n) {
        help_idle_owner(id);
    }
}

/// Empties the inbox of `owner` into its spans if its owner is not in a slow path right now
/// (otherwise it will look at its inbox itself). Objects of spans the owner no longer has go to
/// the central list or their new owner's inbox. Never waits.
///
/// Must be called with no central or heap lock held (it takes them).
pub(super) fn help_idle_owner(owner: u32) {
    let Some(_help) = HelpGuard::try_new(owner) else {
        return;
    };
    let tc = OWNER_TC
        .get(owner as usize - 1)
        .map_or(ptr::null_mut(), |o| o.load(Ordering::Relaxed));
    if !tc.is_null() {
        // SAFETY: holding the owner's id lock, we may change its spans and span lists (not its
        // bins or remote lists, which its fast paths use); the cache stays registered while the
        // lock is held (exit takes it first).
        unsafe { drain_for(tc) };
    }
}

/// Pushes the chain `head ..= tail` of `n` free objects of class `c` (linked through word 0, the
/// free key in word 1) onto owner `owner`'s inbox. Lock-free; one successful compare-exchange.
/// The inbox is a list of such chains: the head object of each carries `(n << 8) | c` in word 1
/// instead of the key (restored when the owner takes it), so that the owner can move a whole chain
/// into its bin without looking at its objects' spans.
///
/// Returns whether the inbox now holds at least `STALLED_PENDING` objects.
///
/// # Safety
/// The chain is well formed and its objects are free objects of spans `owner` owned when looked at.
pub unsafe fn inbox_push(owner: u32, head: *mut u8, tail: *mut u8, n: usize, c: usize) -> bool {
    // SAFETY: forwarded caller contract.
    match unsafe { inbox_try_push(owner, head, tail, n, c) } {
        Some(stalled) => stalled,
        None => {
            // The owner has exited (its inbox is closed) since the caller looked at the span's
            // owner: the span is unowned now, and the central list takes the objects.
            // SAFETY: a well-formed chain of `n` free objects of class `c`, ending at `tail`.
            unsafe {
                *(tail as *mut *mut u8) = ptr::null_mut();
                central::release(c, head, n);
            }
            false
        }
    }
}

/// Puts free object `p` (of span `s`, class `c`) where it belongs from thread cache `tc`: back on
/// the span if `tc` owns it, else on `tc`'s remote list.
///
/// # Safety
/// `tc` is a live cache with an id, used only by the caller; `p` is a free object start of `s`.
pub(super) unsafe fn route(tc: *mut ThreadCache, p: *mut u8, s: *mut Span, c: usize) {
    // SAFETY: caller's contract.
    unsafe {
        if (*s).owner.load(Ordering::Relaxed) == (*tc).id {
            free_owned(tc, s, p, c);
            return;
        }
        let r = &mut (*tc).remote[c];
        *(p as *mut *mut u8) = r.head;
        *(p as *mut usize).add(1) = free_key();
        r.head = p;
        r.len += 1;
        if r.len >= r.lim {
            flush_remote(tc, c);
        }
    }
}

/// Hands `tc`'s remote list of class `c` over: objects of spans `tc` now owns go back to them,
/// objects of unowned spans to the central list (one lock round trip), the rest to their owners'
/// inboxes, one exchange per owner (the first few owners are grouped; rarer ones go one by one).
///
/// # Safety
/// `tc` is a live cache with an id, used only by the caller.
pub(super) unsafe fn flush_remote(tc: *mut ThreadCache, c: usize) {
    const GROUPS: usize = 4;
    // SAFETY: caller's contract; list entries are free objects of class `c` linked through word 0.
    unsafe {
        let r = &mut (*tc).remote[c];
        // Detach first (see `flush_all`).
        let (mut p, n) = (r.head, r.len);
        r.head = ptr::null_mut();
        r.len = 0;
        let mut groups = [(0u32, ptr::null_mut::<u8>(), ptr::null_mut::<u8>(), 0usize); GROUPS];
        let (mut unowned, mut unowned_n) = (ptr::null_mut::<u8>(), 0);
        let mut seen = 0;
        while !p.is_null() && seen < n {
            seen += 1;
            let next = *(p as *mut *mut u8);
            // Validated when it was freed; the span cannot have gone since (`p` counts as used).
            let s = arena::span_of(p as usize);
            if s.is_null() {
                fatal("free", "corrupted free list entry", p as usize);
            }
            let owner = (*s).owner.load(Ordering::Relaxed);
            if owner == (*tc).id {
                free_owned(tc, s, p, c);
            } else if owner == 0 {
                *(p as *mut *mut u8) = unowned;
                unowned = p;
                unowned_n += 1;
            } else {
                match groups.iter_mut().find(|g| g.0 == owner || g.0 == 0) {
                    Some(g) => {
                        if g.0 == 0 {
                            *g = (owner, p, p, 0);
                            *(p as *mut *mut u8) = ptr::null_mut();
                        } else {
                            *(p as *mut *mut u8) = g.1;
                            g.1 = p;
                        }
                        g.3 += 1;
                    }
                    None => {
                        inbox_push(owner, p, p, 1, c);
                    }
                }
            }
            p = next;
        }
        let mut full = [0u32; GROUPS];
        for (g, f) in groups.iter().zip(full.iter_mut()) {
            if g.0 != 0 && inbox_push(g.0, g.1, g.2, g.3, c) {
                *f = g.0;
            }
        }
        if unowned_n > 0 {
            central::release(c, unowned, unowned_n);
        }
        for owner in full.into_iter().filter(|&o| o != 0) {
            if stalled(owner) {
                help_idle_owner(owner);
            }
        }
    }
}

/// Takes everything in `tc`'s inbox back. With `splice`, a chain that fits in its class's bin
/// moves there whole (its objects are this thread's, or free objects any thread may reuse);
/// otherwise each object returns to its span if `tc` owns it, or is routed on.
///
/// # Safety
/// `tc` is a live cache, used only by the caller.
pub(super) unsafe fn drain_inbox(tc: *mut ThreadCache, splice: bool) {
    // SAFETY: caller's contract.
    let p = take_inbox(unsafe { (*tc).id });
    // SAFETY: caller's contract; `p` is the inbox's content.
    unsafe { drain_chains(tc, p, splice) }
}

/// Takes the whole inbox of owner `id` (null if it is empty, closed, or `id` has none) and resets
/// its pending count.
pub(super) fn take_inbox(id: u32) -> *mut u8 {
    let i = id.wrapping_sub(1) as usize;
    let (Some(slot), Some(pending)) = (INBOX.get(i), PENDING.get(i)) else {
        return ptr::null_mut();
    };
    let head = slot.load(Ordering::Relaxed);
    if head.is_null() || head == CLOSED {
        return ptr::null_mut();
    }
    let p = slot.swap(ptr::null_mut(), Ordering::Acquire);
    pending.store(0, Ordering::Relaxed);
    p
}

/// Calls `f(head, tail, n, class)` on each chain of the inbox content `p` (see `inbox_push`),
/// with the head's word 1 back to the free key; `f` may relink the tail (the next chain is read
/// before). Takes the chains' objects off the in-transit counts.
///
/// # Safety
/// `p` was taken from an inbox (its chains are well formed and published to us).
pub(super) unsafe fn for_each_chain(
    mut p: *mut u8,
    mut f: impl FnMut(*mut u8, *mut u8, usize, usize),
) {
    if p.is_null() {
        // The common case on a refill: nothing came in (and the per-class counts below would
        // cost a few hundred instructions to zero and walk).
        return;
    }
    let key = free_key();
    let mut counts = [0u64; NUM_CLASSES];
    while !p.is_null() {
        // SAFETY: inbox entries are chains of free objects linked through word 0 whose head
        // carries the chain's length and class in word 1 (published by the exchange's
        // release/acquire pair).
        unsafe {
            let hdr = *(p as *mut usize).add(1);
            let (n, c) = (hdr >> 8, hdr & 0xff);
            if n == 0 || n > u32::MAX as usize || c == 0 || c >= NUM_CLASSES {
                fatal("free", "corrupted inbox entry", p as usize);
            }
            *(p as *mut usize).add(1) = key;
            let mut tail = p;
            for _ in 1..n {
                tail = *(tail as *mut *mut u8);
                if tail.is_null() {
                    fatal("free", "corrupted inbox entry", p as usize);
                }
            }
            let next = *(tail as *mut *mut u8);
            counts[c] += n as u64;
            f(p, tail, n, c);
            p = next;
        }
    }
    for (k, n) in IN_TRANSIT.iter().zip(counts) {
        if n > 0 {
            k.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// Puts back the objects of the inbox content `p` (chains, see `inbox_push`): with `splice`, a
/// chain that fits in its class's bin moves there whole; otherwise each object returns to its span
/// if `tc` owns it, or is routed on.
///
/// # Safety
/// `tc` is a live cache used only by the caller (its id lock held); `p` was taken from its inbox.
pub(super) unsafe fn drain_chains(tc: *mut ThreadCache, p: *mut u8, splice: bool) {
    // SAFETY: caller's contract: the chains' objects are free, `tc` is ours.
    unsafe {
        for_each_chain(p, |head, tail, n, c| {
            let bin = &mut (*tc).bins[c];
            if splice && bin.room >= n as i32 {
                *(tail as *mut *mut u8) = bin.head;
                bin.head = head;
                bin.added(n);
            } else {
                *(tail as *mut *mut u8) = ptr::null_mut();
                let mut q = head;
                while !q.is_null() {
                    let after = *(q as *mut *mut u8);
                    route(tc, q, span_of_object(q, c), c);
                    q = after;
                }
            }
        })
    }
}

/// Empties the inbox of `tc` on its owner's behalf (see `help_idle_owner`): each object returns to
/// its span if `tc` owns it, else to the central list or its span's new owner. Touches neither
/// `tc`'s bins nor its remote lists.
///
/// # Safety
/// The caller holds `tc`'s id lock as a helper (`HelpGuard`); `tc` is registered with that id.
pub(super) unsafe fn drain_for(tc: *mut ThreadCache) {
    // SAFETY: caller's contract.
    let id = unsafe { (*tc).id };
    let key = free_key();
    // SAFETY: the inbox's content; spans `tc` owns are ours to change under its id lock, and
    // each object goes where its span is now (never to `tc`'s bins or remote lists).
    unsafe {
        for_each_chain(take_inbox(id), |head, tail, _, c| {
            *(tail as *mut *mut u8) = ptr::null_mut();
            let mut q = head;
            while !q.is_null() {
                let after = *(q as *mut *mut u8);
                let s = span_of_object(q, c);
                let owner = (*s).owner.load(Ordering::Relaxed);
                if owner == id {
                    free_owned(tc, s, q, c);
                } else if owner == 0 {
                    *(q as *mut *mut u8) = ptr::null_mut();
                    central::release(c, q, 1);
                } else {
                    *(q as *mut usize).add(1) = key;
                    inbox_push(owner, q, q, 1, c);
                }
                q = after;
            }
        })
    }
}

/// At thread exit, after `flush_all(tc, true)`: closes `tc`'s inbox, so that frees which read the
/// span owner before the spans were abandoned go to the central list instead of waiting in an
/// inbox nobody takes, and returns what reached it since the last drain.
///
/// # Safety
/// `tc` is the exiting thread's cache, its id lock held, all its spans abandoned.
pub(super) unsafe fn close_inbox(tc: *mut ThreadCache) {
    // SAFETY: caller's contract.
    let id = unsafe { (*tc).id };
    let Some(slot) = INBOX.get(id.wrapping_sub(1) as usize) else {
        return;
    };
    let p = slot.swap(CLOSED, Ordering::Acquire);
    if !p.is_null() && p != CLOSED {
        // SAFETY: the inbox's last content; the spans are unowned now, so every object is
        // routed to the central list through the remote lists.
        unsafe { drain_chains(tc, p, false) };
    }
}
