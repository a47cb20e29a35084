//! Owner ids: what segfit keeps per thread cache that owns spans, where other threads can reach
//! it by id — the inbox of frees for the owner's spans, the id lock that lets another thread empty
//! a stalled owner's inbox into its spans, and the owner's last refill time. One cache line per id
//! (`IdSlot`), so that threads' slow paths never share a line.
//!
//! Invariants: an inbox is a lock-free list of chains (see `inbox_try_push`), `CLOSED` after its
//! owner exited until the id is taken again; `ID_LOCK` is `OWNER` only while the owner is in a slow
//! path that changes its spans, `HELPER` only while another thread empties its inbox; `OWNER_TC`
//! changes only with the id lock held by the owner. Used by `cache` (owners and helpers) and
//! `central` (forwarding a free to a span's new owner).

use crate::cache::ThreadCache;
use crate::fatal::fatal;
use crate::size_class::NUM_CLASSES;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// The id of caches that own no spans: never equal to a span's `owner`.
pub const NO_ID: u32 = u32::MAX;

/// Most thread caches alive at once that get an owner id; later ones own no spans (`NO_ID`).
pub(crate) const MAX_IDS: usize = 1 << 16;
/// Bit `id - 1` is set while the cache with that id is alive.
static LIVE_IDS: [AtomicU64; MAX_IDS / 64] = [const { AtomicU64::new(0) }; MAX_IDS / 64];

/// What is kept per owner id, one cache line each: the owner writes `lock` and `last_refill_us` in
/// its slow paths, so ids must not share lines (two threads' slow paths would contend for one).
#[repr(C, align(64))]
pub(crate) struct IdSlot {
    pub(crate) lock: AtomicU8,
    last_refill_us: AtomicU64,
    owner_tc: AtomicPtr<ThreadCache>,
    inbox: AtomicPtr<u8>,
    pending: AtomicU32,
}

pub(crate) static IDS: [IdSlot; MAX_IDS] = [const {
    IdSlot {
        lock: AtomicU8::new(0),
        last_refill_us: AtomicU64::new(0),
        owner_tc: AtomicPtr::new(ptr::null_mut()),
        inbox: AtomicPtr::new(ptr::null_mut()),
        pending: AtomicU32::new(0),
    }
}; MAX_IDS];

/// One field of `IDS`, indexed by `id - 1` like an array: `FIELD.get(i)`.
pub(crate) struct PerId<T: 'static>(fn(&'static IdSlot) -> &'static T);

impl<T> PerId<T> {
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> Option<&'static T> {
        IDS.get(i).map(self.0)
    }
}

/// The smallest free owner id, marked alive; `NO_ID` if all are taken. Registry lock held.
pub(crate) fn take_id() -> u32 {
    for (w, word) in LIVE_IDS.iter().enumerate() {
        let v = word.load(Ordering::Relaxed);
        if v != !0 {
            let b = (!v).trailing_zeros() as usize;
            word.fetch_or(1 << b, Ordering::Relaxed);
            return (w * 64 + b + 1) as u32;
        }
    }
    NO_ID
}

/// Marks owner id `id` free. Registry lock held.
pub(crate) fn drop_id(id: u32) {
    let i = id.wrapping_sub(1) as usize;
    if let Some(word) = LIVE_IDS.get(i / 64) {
        word.fetch_and(!(1 << (i % 64)), Ordering::Relaxed);
    }
}

/// Per owner id, objects other threads freed into its spans (linked through word 0), pushed
/// lock-free and taken all at once by the owner.
pub(crate) static INBOX: PerId<AtomicPtr<u8>> = PerId(|s| &s.inbox);

/// Per class, objects in inboxes (for statistics).
pub(crate) static IN_TRANSIT: [AtomicU64; NUM_CLASSES] = [const { AtomicU64::new(0) }; NUM_CLASSES];

/// Per owner id, objects pushed to its inbox since it was last emptied (approximate).
pub(crate) static PENDING: PerId<AtomicU32> = PerId(|s| &s.pending);

/// Per owner id, when its owner last entered its refill path (µs, monotonic; written by the owner).
pub(crate) static LAST_REFILL_US: PerId<AtomicU64> = PerId(|s| &s.last_refill_us);

/// An inbox holding at least this many objects, whose owner has not refilled a bin for
/// `STALLED_US` (say, a main thread waiting in `join` while workers free what it allocated), is
/// emptied into the owner's spans by another thread on the owner's behalf: by the next thread that
/// pushes to it, or by a thread about to take a new span. Spans whose objects are then all back
/// go to the central lists, so other threads can use them.
pub(crate) const STALLED_PENDING: u32 = 256;
/// See `STALLED_PENDING`: long against a refill (every few dozen allocations), and against the
/// time a producer waits on a full queue, short against a thread blocked for good.
pub(crate) const STALLED_US: u64 = 2000;

/// Monotonic microseconds (vDSO; no system call, no allocation).
pub(crate) fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Whether owner `id`'s inbox holds `STALLED_PENDING` objects and it has not refilled for
/// `STALLED_US`.
pub(crate) fn stalled(id: u32) -> bool {
    let i = id.wrapping_sub(1) as usize;
    match (PENDING.get(i), LAST_REFILL_US.get(i)) {
        (Some(p), Some(t)) => {
            p.load(Ordering::Relaxed) >= STALLED_PENDING
                && now_us().saturating_sub(t.load(Ordering::Relaxed)) >= STALLED_US
        }
        _ => false,
    }
}

/// Per owner id: who may change the spans and span lists of the cache with that id. `FREE`, or
/// `OWNER` (the cache's thread, in a slow path), or `HELPER` (another thread emptying the inbox
/// on the owner's behalf). The owner waits for a helper; a helper never waits.
pub(crate) static ID_LOCK: PerId<AtomicU8> = PerId(|s| &s.lock);
pub(crate) const FREE: u8 = 0;
pub(crate) const OWNER: u8 = 1;
pub(crate) const HELPER: u8 = 2;

/// Per owner id, its cache (null while none): written with `ID_LOCK` held by the owner, read by a
/// helper holding it.
pub(crate) static OWNER_TC: PerId<AtomicPtr<ThreadCache>> = PerId(|s| &s.owner_tc);

/// Held by a thread, in its slow paths, over its own spans (see `ID_LOCK`); released on drop.
/// The fast paths (bin push and pop, remote push) touch no span and take no lock.
pub(crate) struct OwnGuard(pub(crate) Option<&'static AtomicU8>);

/// Takes an id lock as its owner: waits for a helper to finish (spinning briefly, then yielding
/// the CPU, since the helper may be descheduled or waiting for a class lock).
#[inline(always)]
fn acquire(l: &AtomicU8) {
    if l.compare_exchange(FREE, OWNER, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return;
    }
    acquire_slow(l);
}

#[cold]
#[inline(never)]
fn acquire_slow(l: &AtomicU8) {
    let mut spins = 0u32;
    loop {
        if l.load(Ordering::Relaxed) == FREE
            && l.compare_exchange_weak(FREE, OWNER, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
        spins += 1;
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions and does not allocate.
            unsafe { libc::sched_yield() };
        }
    }
}

impl OwnGuard {
    /// `tc`'s own id lock (a no-op for a cache without an id).
    ///
    /// # Safety
    /// `tc` is a valid cache.
    #[inline(always)]
    pub(crate) unsafe fn of(tc: *mut ThreadCache) -> OwnGuard {
        // SAFETY: `own` is null or points into the static `IDS` (caller: `tc` is valid).
        let l = unsafe { (*tc).own.as_ref() };
        if let Some(l) = l {
            acquire(l);
        }
        OwnGuard(l)
    }

    #[inline]
    pub(crate) fn lock(id: u32) -> OwnGuard {
        let l = ID_LOCK.get(id.wrapping_sub(1) as usize);
        if let Some(l) = l {
            acquire(l);
        }
        OwnGuard(l)
    }
}

impl Drop for OwnGuard {
    #[inline]
    fn drop(&mut self) {
        if let Some(l) = self.0 {
            l.store(FREE, Ordering::Release);
        }
    }
}

/// `inbox_push`, or `None` (nothing pushed) if `owner`'s inbox is closed because it exited. For
/// callers that hold a class lock (they cannot hand the objects to `central::release`).
///
/// # Safety
/// As `inbox_push`.
pub unsafe fn inbox_try_push(
    owner: u32,
    head: *mut u8,
    tail: *mut u8,
    n: usize,
    c: usize,
) -> Option<bool> {
    let i = owner.wrapping_sub(1) as usize;
    let (Some(slot), Some(pending)) = (INBOX.get(i), PENDING.get(i)) else {
        fatal("free", "corrupted span owner", owner as usize)
    };
    let mut old = slot.load(Ordering::Relaxed);
    loop {
        if old == CLOSED {
            return None;
        }
        // SAFETY: `head` and `tail` are free objects of at least 16 bytes we may link (caller).
        unsafe {
            *(head as *mut usize).add(1) = (n << 8) | c;
            *(tail as *mut *mut u8) = old;
        }
        match slot.compare_exchange_weak(old, head, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now) => old = now,
        }
    }
    if let Some(k) = IN_TRANSIT.get(c) {
        k.fetch_add(n as u64, Ordering::Relaxed);
    }
    let before = pending.fetch_add(n as u32, Ordering::Relaxed);
    Some(before.wrapping_add(n as u32) >= STALLED_PENDING)
}

/// The value of a closed inbox: its owner exited after taking it for the last time; pushes go to
/// the central list instead (the owner's spans are all unowned by then).
pub(crate) const CLOSED: *mut u8 = ptr::dangling_mut::<u8>();
