//! Thread caches' life cycle: process set-up (`global_init`), a thread's first allocation
//! (`init_thread`), its exit (`thread_exit`: everything goes back, spans are abandoned, the inbox
//! closes), the registry of live caches that statistics walk, and `fork` (the forking thread's
//! own id, and the child's rebuild of the spans of threads that are gone). Part of `cache` (see
//! the parent module for the states a thread's slot goes through).
//!
//! Invariants: a cache is on the registry list (under `REGISTRY_LOCK`) from `init_thread` until
//! `thread_exit` unlinks it; an exiting cache has given back every object and span before its id
//! is dropped. Called by the parent module's slow paths, `stats`, and the fork handlers.

use super::remote::{close_inbox, drain_chains, drain_inbox, flush_remote, route};
use super::{
    remote_limit, span_of_object, start_max, Bin, CacheState, ThreadCache, BIN_CAP, CACHE_BUDGET,
    DEAD_PTR, FREE_KEY, UNCACHED_ALLOCS,
};
use crate::central;
use crate::lock::Lock;
use crate::meta::FixAlloc;
use crate::owner::{
    drop_id, now_us, take_id, IdSlot, OwnGuard, CLOSED, IDS, INBOX, IN_TRANSIT, LAST_REFILL_US,
    NO_ID, OWNER_TC,
};
use crate::size_class::NUM_CLASSES;
use crate::span::SpanList;
use crate::tls;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Registry of live caches (for statistics and fork), and the records they live in.
pub(super) struct Registry {
    /// First registered cache (linked through `next`/`prev`).
    pub(super) head: *mut ThreadCache,
    records: FixAlloc<ThreadCache>,
    /// Registered caches of running threads (parked ones are registered but not counted).
    live: usize,
    created: u64,
    /// Allocation counts of caches that were torn down.
    retired_allocs: [u64; NUM_CLASSES],
    /// Parked caches (see [`park`]), newest first, linked through `parked_next`.
    parked: *mut ThreadCache,
    /// Length of `parked`, at most [`MAX_PARKED`] (mirrored in [`PARKED`]).
    parked_n: usize,
}

pub(super) struct RegistryCell(UnsafeCell<Registry>);

// SAFETY: only accessed with REGISTRY_LOCK held.
unsafe impl Sync for RegistryCell {}

/// Lock of the cache registry. Lock order: registry → central → heap.
pub static REGISTRY_LOCK: Lock = Lock::new();

pub(super) static REGISTRY: RegistryCell = RegistryCell(UnsafeCell::new(Registry {
    head: ptr::null_mut(),
    records: FixAlloc::new(),
    live: 0,
    created: 0,
    retired_allocs: [0; NUM_CLASSES],
    parked: ptr::null_mut(),
    parked_n: 0,
}));

/// Caches of exited threads kept whole for threads that start later (see [`park`]); 0 turns
/// parking off ([`set_max_parked`]).
static MAX_PARKED: AtomicUsize = AtomicUsize::new(4);
/// `Registry::parked_n`, readable without the registry lock (see [`release_stale_parked`]).
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// A parked cache no thread adopted within this long is torn down (ms), by the next thread that
/// exits or needs a new span, or by the scavenger; `collect` tears down all.
const PARK_MS: u64 = 1000;

pub(super) fn with_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    REGISTRY_LOCK.lock();
    // SAFETY: the lock is held.
    let r = f(unsafe { &mut *REGISTRY.0.get() });
    REGISTRY_LOCK.unlock();
    r
}

pub(super) static PTHREAD_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

pub(super) static INIT: AtomicU8 = AtomicU8::new(0);

/// One-time process setup: the free key, the pthread key whose destructor flushes caches, and the
/// fork handlers.
/// Safe to call from any thread, any number of times; allocates nothing.
pub fn global_init() {
    if INIT.load(Ordering::Acquire) == 2 {
        return;
    }
    if INIT
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Acquire)
        .is_ok()
    {
        let mut key = 0usize;
        // SAFETY: getrandom writes at most 8 bytes into `key`; no allocation.
        let n = unsafe { libc::getrandom((&raw mut key).cast(), 8, libc::GRND_NONBLOCK) };
        if n != 8 {
            // No entropy yet (early boot): fall back on address-space randomisation and time.
            key = (&raw const key as usize).rotate_left(29) ^ (global_init as fn() as usize);
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes into `ts`.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            key ^= (ts.tv_nsec as usize).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        FREE_KEY.store(key | 1, Ordering::Relaxed);
        crate::owner::init_handshake();
        let mut k: libc::pthread_key_t = 0;
        // SAFETY: pthread_key_create stores a key in `k`; `thread_exit` has the required ABI.
        if unsafe { libc::pthread_key_create(&mut k, Some(thread_exit)) } == 0 {
            PTHREAD_KEY.store(k as usize, Ordering::Relaxed);
        }
        INIT.store(2, Ordering::Release);
        // After INIT is 2: registering may allocate, which must find setup done.
        crate::fork::install();
    } else {
        while INIT.load(Ordering::Acquire) != 2 {
            core::hint::spin_loop();
        }
    }
}

/// Gives this thread a cache. Returns the slot's new value (a live cache, or `DEAD` if metadata
/// could not be had, in which case the thread works through the central lists).
#[cold]
pub(super) fn init_thread() -> *mut ThreadCache {
    // Anything allocated while we set up (a libc that allocates in pthread_atfork or
    // pthread_setspecific) is served by the central lists instead of recursing into this function.
    tls::set(DEAD_PTR);
    global_init();
    let tc = with_registry(|r| {
        if !r.parked.is_null() {
            // Adopt the newest parked cache: its bins, spans, id and inbox become this thread's.
            let tc = r.parked;
            // SAFETY: parked caches are registered records no thread uses.
            unsafe {
                r.parked = (*tc).parked_next;
                (*tc).parked_next = ptr::null_mut();
            }
            r.parked_n -= 1;
            PARKED.store(r.parked_n, Ordering::Relaxed);
            r.live += 1;
            r.created += 1;
            return tc;
        }
        let tc = r.records.alloc();
        if tc.is_null() {
            return tc;
        }
        // SAFETY: `tc` is a fresh zeroed record; linking it into the registry under its lock.
        unsafe {
            (*tc).id = take_id();
            (*tc).own = IDS
                .get((*tc).id.wrapping_sub(1) as usize)
                .map_or(ptr::null(), |l| l as *const IdSlot);
            if (*tc).id != NO_ID {
                // A cache without an id keeps nothing: its bins and remote lists stay at limit 0.
                for c in 1..NUM_CLASSES {
                    (*tc).bins[c].set_max(start_max(c));
                    (*tc).bins[c].cap = BIN_CAP[c];
                    (*tc).remote[c].lim = remote_limit(c);
                }
            }
            (*tc).state = CacheState::Live;
            (*tc).budget = CACHE_BUDGET;
            (*tc).next = r.head;
            if !r.head.is_null() {
                (*r.head).prev = tc;
            }
        }
        r.head = tc;
        r.live += 1;
        r.created += 1;
        tc
    });
    if tc.is_null() {
        return DEAD_PTR;
    }
    let key = PTHREAD_KEY.load(Ordering::Relaxed);
    if key != usize::MAX {
        // SAFETY: `key` is a valid pthread key; the value is our cache record.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, tc.cast()) };
    }
    // SAFETY: our own new cache. Objects pushed to this id's inbox after its previous holder
    // exited are routed to wherever their spans are now.
    unsafe {
        let id = (*tc).id;
        let _own = OwnGuard::lock(id);
        if let Some(o) = OWNER_TC.get(id.wrapping_sub(1) as usize) {
            o.store(tc, Ordering::Relaxed);
        }
        if let Some(t) = LAST_REFILL_US.get(id.wrapping_sub(1) as usize) {
            t.store(now_us(), Ordering::Relaxed);
        }
        // Reopen the inbox (closed when the id's previous holder exited).
        if let Some(slot) = INBOX.get(id.wrapping_sub(1) as usize) {
            let p = slot.swap(ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() && p != CLOSED {
                drain_chains(tc, p, false);
            }
        }
    }
    tls::set(tc);
    tc
}

/// Returns every object of `tc`'s bins and remote lists to where it belongs, and drains its inbox.
/// With `abandon`, also gives all its spans to the central lists (thread exit, fork child);
/// without, only those with no object out.
///
/// # Safety
/// Nothing else uses `tc` (its thread is exiting, is the caller, or is gone after fork).
pub(super) unsafe fn flush_all(tc: *mut ThreadCache, abandon: bool) {
    // SAFETY: exclusive access to `tc` (caller).
    unsafe {
        if (*tc).id == NO_ID {
            return;
        }
        drain_inbox(tc, true);
        for c in 1..NUM_CLASSES {
            trim_bin(tc, c, 0);
            flush_remote(tc, c);
        }
        for c in 1..NUM_CLASSES {
            for full in [false, true] {
                let list = if full {
                    &mut (*tc).full[c]
                } else {
                    &mut (*tc).partial[c]
                };
                let mut s = list.head;
                while !s.is_null() {
                    let next = (*s).next;
                    if abandon || (*s).used == 0 {
                        list.remove(s);
                        central::abandon(c, s);
                    }
                    s = next;
                }
            }
        }
        if abandon {
            // Close the inbox: frees that reach it from now on go to the central list. What
            // reached it meanwhile now finds the spans unowned.
            close_inbox(tc);
            for c in 1..NUM_CLASSES {
                flush_remote(tc, c);
            }
        }
    }
}

/// Gives all but `keep` objects of `tc`'s bin of class `c` back to where they belong (their spans,
/// or their owners through the remote list): the most recently freed ones, so that the bin keeps
/// its oldest (measured: keeping the newest made thread_churn's adopted caches about 5% slower).
/// They are detached from the bin first: a fork in between must not find them still listed here
/// (a child gives parked bins back, and would give them back a second time). Walks at most the
/// bin's count (lists end in null): robust even if a forked-away thread was cut off in the middle
/// of a push or pop.
///
/// # Safety
/// As for `flush_all`; the caller holds `tc`'s id lock.
unsafe fn trim_bin(tc: *mut ThreadCache, c: usize, keep: u32) {
    // SAFETY: exclusive access to `tc` (caller); bin objects are free objects of class `c`
    // linked through word 0.
    unsafe {
        let (head, give) = {
            let bin = &mut (*tc).bins[c];
            let len = bin.count();
            if len <= keep {
                if keep == 0 {
                    bin.head = ptr::null_mut();
                    bin.room = bin.max as i32;
                }
                return;
            }
            let give = len - keep;
            let head = bin.head;
            // The first `give` objects go; the bin keeps what follows them (nothing if `keep`
            // is 0: no walk to the cut then).
            let mut last = head;
            if keep > 0 {
                for _ in 1..give {
                    if last.is_null() {
                        break;
                    }
                    last = *(last as *mut *mut u8);
                }
            }
            bin.head = if keep == 0 || last.is_null() {
                ptr::null_mut()
            } else {
                core::mem::replace(&mut *(last as *mut *mut u8), ptr::null_mut())
            };
            bin.room += give as i32;
            (head, give)
        };
        let (mut p, mut n) = (head, 0);
        while !p.is_null() && n < give {
            n += 1;
            let next = *(p as *mut *mut u8);
            route(tc, p, span_of_object(p, c), c);
            p = next;
        }
    }
}

/// Unlinks and frees a cache record. Registry lock held.
pub(super) unsafe fn unregister(r: &mut Registry, tc: *mut ThreadCache) {
    // SAFETY: `tc` is a registered record (caller).
    unsafe {
        for (sum, bin) in r.retired_allocs.iter_mut().zip((*tc).bins.iter()) {
            *sum += bin.allocs;
        }
        drop_id((*tc).id);
        if (*tc).prev.is_null() {
            r.head = (*tc).next;
        } else {
            (*(*tc).prev).next = (*tc).next;
        }
        if !(*tc).next.is_null() {
            (*(*tc).next).prev = (*tc).prev;
        }
        r.records.free(tc);
    }
    r.live -= 1;
}

/// The pthread key destructor: runs at thread exit, after the thread's other TLS destructors.
extern "C" fn thread_exit(arg: *mut libc::c_void) {
    let tc = arg as *mut ThreadCache;
    tls::set(DEAD_PTR);
    // SAFETY: `tc` is this thread's registered cache; the slot no longer points to it, so nothing
    // else uses it.
    unsafe {
        if !park(tc) {
            retire(tc);
        }
    }
    release_parked(false);
}

/// Parks exiting cache `tc` if fewer than [`MAX_PARKED`] are: it stays registered with its bins,
/// its owned spans, its id and its open inbox, and the next thread that starts adopts it whole
/// (`init_thread`), which spares both threads a round trip of every object and span through the
/// central lists (8,000 short-lived threads, 4 at a time, make about 40 such round trips each;
/// glibc hands an exited thread's arena to the next thread the same way). Frees into its spans
/// meanwhile wait in its inbox, as for an owner blocked in `join`, and a stalled-owner helper may
/// move them onto the spans. First its bins go back to a new thread's limits (the objects over
/// them back to their spans, as at an exit without parking; the budget is restored), so a parked
/// cache holds no more than a new thread's would after the same work, and its remote lists are
/// handed over: other owners' objects must not wait for a thread that may never come. Returns
/// whether `tc` was parked.
///
/// # Safety
/// `tc` is the exiting thread's cache, registered and used by nobody else.
unsafe fn park(tc: *mut ThreadCache) -> bool {
    // SAFETY: caller's contract.
    unsafe {
        if (*tc).id == NO_ID {
            return false;
        }
        {
            let _own = OwnGuard::lock((*tc).id);
            for c in 1..NUM_CLASSES {
                let start = start_max(c);
                trim_bin(tc, c, start);
                (*tc).bins[c].set_max(start);
                (*tc).bins[c].cap = BIN_CAP[c];
                if (*tc).remote[c].len > 0 {
                    flush_remote(tc, c);
                }
            }
            (*tc).budget = CACHE_BUDGET;
        }
        let now = crate::page_heap::now_ms();
        with_registry(|r| {
            if r.parked_n >= MAX_PARKED.load(Ordering::Relaxed) {
                return false;
            }
            (*tc).parked_next = r.parked;
            (*tc).parked_ms = now;
            r.parked = tc;
            r.parked_n += 1;
            PARKED.store(r.parked_n, Ordering::Relaxed);
            r.live -= 1;
            true
        })
    }
}

/// Tears down parked caches: all of them with `all`, else those parked [`PARK_MS`] ago or more.
/// Each gives back everything it holds (as at an exit without parking). Takes the registry lock;
/// call with no lock held but, at most, the caller's own id lock.
pub fn release_parked(all: bool) {
    let now = crate::page_heap::now_ms();
    // Bounded: threads that keep exiting keep parking, and this need not outrun them. (Not by
    // `MAX_PARKED` alone: it may have been lowered below what is parked.)
    let bound = PARKED.load(Ordering::Relaxed) + MAX_PARKED.load(Ordering::Relaxed);
    for _ in 0..bound {
        let tc = with_registry(|r| {
            // The oldest parked cache is the last on the list.
            let (mut prev, mut tc) = (ptr::null_mut::<ThreadCache>(), r.parked);
            // SAFETY: parked caches are registered records no thread uses.
            unsafe {
                while !tc.is_null() && !(*tc).parked_next.is_null() {
                    prev = tc;
                    tc = (*tc).parked_next;
                }
                if tc.is_null() || !(all || (*tc).parked_ms + PARK_MS <= now) {
                    return ptr::null_mut();
                }
                if prev.is_null() {
                    r.parked = ptr::null_mut();
                } else {
                    (*prev).parked_next = ptr::null_mut();
                }
            }
            r.parked_n -= 1;
            PARKED.store(r.parked_n, Ordering::Relaxed);
            r.live += 1; // counted again until `retire` unregisters it
            tc
        });
        if tc.is_null() {
            return;
        }
        // SAFETY: an unparked cache no thread uses.
        unsafe { retire(tc) };
    }
}

/// [`release_parked`] of the stale ones, from a thread that needs a new span: a program whose
/// threads have all exited but one would otherwise keep up to four parked caches, and the free
/// objects of their spans, for good (unless the scavenger runs). One relaxed load when none is
/// parked.
pub(super) fn release_stale_parked() {
    if PARKED.load(Ordering::Relaxed) != 0 {
        release_parked(false);
    }
}

/// Sets how many exited threads' caches are kept for adoption (default 4; 0: none, every exiting
/// thread gives everything back at once). Each parked cache keeps its owned spans (their free
/// objects usable only by the thread that adopts it) for up to about a second. Lowering it does
/// not tear down caches already parked (`collect` does).
pub fn set_max_parked(n: usize) {
    MAX_PARKED.store(n, Ordering::Relaxed);
}

/// Gives back everything cache `tc` holds, abandons its spans, closes its inbox and unregisters
/// it (its id is dropped).
///
/// # Safety
/// `tc` is a registered cache counted in `live` that no thread uses (its thread has exited).
unsafe fn retire(tc: *mut ThreadCache) {
    // SAFETY: caller's contract.
    unsafe {
        let id = (*tc).id;
        {
            let _own = OwnGuard::lock(id);
            flush_all(tc, true);
            if let Some(o) = OWNER_TC.get(id.wrapping_sub(1) as usize) {
                o.store(ptr::null_mut(), Ordering::Relaxed);
            }
        }
        with_registry(|r| unregister(r, tc));
    }
}

/// Returns the calling thread's cached objects to their spans and its spans with no object out to
/// the central lists (used by `collect`).
pub fn flush_current() {
    let tc = tls::get();
    // SAFETY: the slot holds a valid cache; only a Live one is ours to flush.
    unsafe {
        if (*tc).state == CacheState::Live {
            let _own = OwnGuard::lock((*tc).id);
            flush_all(tc, false);
        }
    }
}

/// Adds, per class, the objects held in all live thread caches and inboxes to `cached` and the
/// small objects allocated since start (all threads, live or gone) to `allocs`. Racy while other
/// threads allocate; exact when they are quiescent.
pub fn fold_counts(cached: &mut [u64; NUM_CLASSES], allocs: &mut [u64; NUM_CLASSES]) {
    with_registry(|r| {
        for c in 0..NUM_CLASSES {
            allocs[c] += r.retired_allocs[c] + UNCACHED_ALLOCS[c].load(Ordering::Relaxed);
            cached[c] += IN_TRANSIT[c].load(Ordering::Relaxed);
        }
        let mut tc = r.head;
        while !tc.is_null() {
            // SAFETY: registered caches are valid records; their counters may be read racily.
            unsafe {
                for c in 0..NUM_CLASSES {
                    let bin = core::ptr::read_volatile(&(*tc).bins[c] as *const Bin);
                    cached[c] += bin.count() as u64;
                    cached[c] += core::ptr::read_volatile(&(*tc).remote[c].len) as u64;
                    allocs[c] += bin.allocs;
                }
                tc = (*tc).next;
            }
        }
    })
}

/// Before `fork()`: takes this thread's own id lock, so that no other thread is emptying its inbox
/// into its spans while the process is copied (the child keeps this thread's spans as they are).
pub fn fork_lock_own() {
    let tc = tls::get();
    // SAFETY: the slot holds a valid cache.
    let id = unsafe { (*tc).id };
    core::mem::forget(OwnGuard::lock(id));
}

/// After `fork()`, in parent and child: releases what `fork_lock_own` took.
pub fn fork_unlock_own() {
    let tc = tls::get();
    // SAFETY: the slot holds a valid cache.
    let id = unsafe { (*tc).id };
    drop(OwnGuard(IDS.get(id.wrapping_sub(1) as usize)));
}

/// Live caches and caches created since start.
pub fn thread_counts() -> (usize, u64) {
    with_registry(|r| (r.live, r.created))
}

/// Caches of exited threads parked for adoption (see [`park`]).
pub fn parked_count() -> usize {
    with_registry(|r| r.parked_n)
}

/// In a forked child: every other thread is gone, possibly stopped halfway through changing one of
/// its spans or lists. Their spans are rebuilt from their free lists and given to the central
/// lists (found by walking the page heap, not through the caches' lists, which may be torn), and
/// their caches are dropped. Objects in their bins and remote lists leak in the child (their
/// lists may be torn); their inboxes are taken by the next thread given the same id. Locks must
/// already have been reset.
pub fn after_fork_child() {
    let me = tls::get();
    // SAFETY: the slot holds a valid cache.
    let my_id = unsafe { (*me).id };
    // Other threads are gone: so are any helpers (even one that had just flagged this thread's
    // own id, which it holds since `fork_prepare`), and the owners of every other id.
    for (i, slot) in crate::owner::used_slots().iter().enumerate() {
        // Read first: writing every slot would copy every page of them.
        if slot.helper.load(Ordering::Relaxed) != 0 {
            slot.helper.store(0, Ordering::Relaxed);
        }
        if i + 1 != my_id as usize && slot.busy.load(Ordering::Relaxed) != 0 {
            slot.busy.store(0, Ordering::Relaxed);
        }
    }
    // The `membarrier` registration is inherited across fork (only exec drops it); registering
    // again is harmless, and if it fails no thread of the child will help another.
    crate::owner::init_handshake();
    let mut orphans = SpanList::new();
    crate::page_heap::with(|h| {
        h.for_each_small_span(|s| {
            // SAFETY: single-threaded child; a span owned by another (gone) thread is ours now.
            unsafe {
                let o = (*s).owner.load(Ordering::Relaxed);
                if o != 0 && o != my_id {
                    (*s).rebuild();
                    (*s).owner.store(0, Ordering::Relaxed);
                    (*s).linked = false;
                    (*s).in_full = false;
                    orphans.push(s);
                }
            }
        })
    });
    while !orphans.head.is_null() {
        let s = orphans.head;
        // SAFETY: `s` is an unowned small span on our local list only.
        unsafe {
            orphans.remove(s);
            central::abandon((*s).class as usize, s);
        }
    }
    with_registry(|r| {
        // Parked caches go like the others (their spans were rebuilt above), but their bins were
        // left whole at park and nobody touched them since: those objects go back.
        let mut p = r.parked;
        while !p.is_null() {
            // SAFETY: a parked cache's bins are consistent lists of free objects of their class.
            unsafe {
                for c in 1..NUM_CLASSES {
                    let bin = &mut (*p).bins[c];
                    let n = bin.count() as usize;
                    if n > 0 && !bin.head.is_null() {
                        central::release(c, bin.head, n);
                    }
                    bin.head = ptr::null_mut();
                    bin.room = bin.max as i32;
                }
                p = (*p).parked_next;
            }
        }
        r.live += r.parked_n;
        r.parked = ptr::null_mut();
        r.parked_n = 0;
        PARKED.store(0, Ordering::Relaxed);
        let mut tc = r.head;
        while !tc.is_null() {
            // SAFETY: registered records are valid; their threads no longer exist in the child.
            unsafe {
                let next = (*tc).next;
                if tc != me {
                    // Their bins and remote lists are not walked: the copy may hold them half
                    // updated, and a stale link could lead to a live object. Those objects leak
                    // in the child (inbox contents are taken by the next holder of the id).
                    if let Some(o) = OWNER_TC.get((*tc).id.wrapping_sub(1) as usize) {
                        o.store(ptr::null_mut(), Ordering::Relaxed);
                    }
                    unregister(r, tc);
                }
                tc = next;
            }
        }
    });
}
