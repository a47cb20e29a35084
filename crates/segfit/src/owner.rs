//! Owner ids: what segfit keeps per thread cache that owns spans, where other threads can reach
//! it by id — the inbox of frees for the owner's spans, the id lock that lets another thread empty
//! a stalled owner's inbox into its spans, and the owner's last refill time. One cache line per id
//! (`IdSlot`), so that threads' slow paths never share a line.
//!
//! Invariants: an inbox is a lock-free list of chains (see `inbox_try_push`), `CLOSED` after its
//! owner exited until the id is taken again; an id's `busy` flag is set only while its owner is in
//! a slow path that changes its spans, its `helper` flag only while another thread empties its
//! inbox, and the two are never both "in" at once (see the handshake below); `OWNER_TC` changes
//! only while the owner is in. Used by `cache` (owners and helpers) and `central` (forwarding a
//! free to a span's new owner).
//!
//! The handshake is Dekker's, made asymmetric: the owner, which enters on every free that goes
//! back to a span, stores `busy` and loads `helper` with only a compiler fence between them; the
//! rare helper stores `helper`, runs `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` — which makes
//! every running thread of the process execute a full memory barrier — and loads `busy`. So
//! either the owner's store is visible to the helper or the helper's store is visible to the
//! owner, and whoever sees the other backs off; the owner pays no atomic read-modify-write and no
//! fence instruction. Where `membarrier` cannot be registered no thread helps (`helping_enabled`):
//! owners then empty their inboxes only themselves.

use crate::cache::ThreadCache;
use crate::fatal::fatal;
use crate::size_class::NUM_CLASSES;
use core::ptr;
use core::sync::atomic::{
    compiler_fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering,
};

/// The id of caches that own no spans: never equal to a span's `owner`.
pub const NO_ID: u32 = u32::MAX;

/// Most thread caches alive at once that get an owner id; later ones own no spans (`NO_ID`).
pub(crate) const MAX_IDS: usize = 1 << 16;
/// Bit `id - 1` is set while the cache with that id is alive.
static LIVE_IDS: [AtomicU64; MAX_IDS / 64] = [const { AtomicU64::new(0) }; MAX_IDS / 64];

/// What is kept per owner id, one cache line each: the owner writes `busy` and `last_refill_us` in
/// its slow paths, so ids must not share lines (two threads' slow paths would contend for one).
#[repr(C, align(64))]
pub(crate) struct IdSlot {
    /// 1 while the owner is in a slow path that changes its spans (stored by the owner only).
    pub(crate) busy: AtomicU8,
    /// 1 while a helper holds (or is trying for) the right to change the owner's spans; taken
    /// with a compare-exchange among helpers.
    pub(crate) helper: AtomicU8,
    last_refill_us: AtomicU64,
    /// When a helper last found this id's owner in after paying for a `membarrier` (µs,
    /// monotonic): after such a miss no helper tries again for `STALLED_US`, since a miss leaves
    /// the owner looking stalled and every `membarrier` interrupts every CPU running the process.
    /// (A help that gets in empties the inbox, which ends the stall by itself.)
    last_help_us: AtomicU64,
    owner_tc: AtomicPtr<ThreadCache>,
    inbox: AtomicPtr<u8>,
    pending: AtomicU32,
}

pub(crate) static IDS: [IdSlot; MAX_IDS] = [const {
    IdSlot {
        busy: AtomicU8::new(0),
        helper: AtomicU8::new(0),
        last_refill_us: AtomicU64::new(0),
        last_help_us: AtomicU64::new(0),
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

/// One more than the highest owner id ever handed out: slots at and above it were never used
/// (their flags are 0 and their memory untouched). Registry lock held to raise it.
static IDS_USED: AtomicU32 = AtomicU32::new(0);

/// The slots of every owner id handed out so far (a fork child walks these, not all of `IDS`,
/// whose untouched 4 MiB it would otherwise fault in).
pub(crate) fn used_slots() -> &'static [IdSlot] {
    let n = (IDS_USED.load(Ordering::Acquire) as usize).min(MAX_IDS);
    IDS.get(..n).unwrap_or(&[])
}

/// The smallest free owner id, marked alive; `NO_ID` if all are taken. Registry lock held.
pub(crate) fn take_id() -> u32 {
    for (w, word) in LIVE_IDS.iter().enumerate() {
        let v = word.load(Ordering::Relaxed);
        if v != !0 {
            let b = (!v).trailing_zeros() as usize;
            word.fetch_or(1 << b, Ordering::Relaxed);
            let id = (w * 64 + b + 1) as u32;
            if IDS_USED.load(Ordering::Relaxed) < id {
                IDS_USED.store(id, Ordering::Release);
            }
            return id;
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

/// Per owner id, its cache (null while none): written by the owner while it is in (see
/// `OwnGuard`), read by a helper while it is in.
pub(crate) static OWNER_TC: PerId<AtomicPtr<ThreadCache>> = PerId(|s| &s.owner_tc);

/// `membarrier` command values (linux/membarrier.h).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Whether this process registered for private expedited `membarrier`, so that owners need only
/// a compiler fence (see the module docs). Set once by `init_handshake`, before any id is handed
/// out, and never cleared.
static ASYMMETRIC: AtomicBool = AtomicBool::new(false);

/// Registers the process for private expedited `membarrier` (Linux 4.14+; may be refused, say by
/// a seccomp filter: then no thread helps another; valgrind 3.19 passes it through). Called by
/// `cache::global_init` before the first id is taken, and again in a forked child.
pub(crate) fn init_handshake() {
    // SAFETY: membarrier takes no pointers; an unknown command or a refusal returns -1.
    let ok = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        )
    } == 0;
    ASYMMETRIC.store(ok, Ordering::Relaxed);
}

/// Whether other threads may empty a stalled owner's inbox into its spans: only with
/// `membarrier` registered. Without it (kernels before 4.14, a seccomp filter) owners
/// empty their own inboxes only, on their next refill or at exit, and no helper ever goes in, so
/// the owner's side needs no fence in either case.
pub fn helping_enabled() -> bool {
    ASYMMETRIC.load(Ordering::Relaxed)
}

/// The helper's side of the handshake: false if the barrier could not be had (then the helper
/// must not go in).
fn helper_fence() -> bool {
    if !ASYMMETRIC.load(Ordering::Relaxed) {
        return false;
    }
    // SAFETY: membarrier takes no pointers. After it returns, every thread of the process that
    // was running has executed a full barrier (one that was not running will on its next context
    // switch), so an owner's earlier store of `busy` is visible here, or its next load of
    // `helper` sees our store.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0 }
}

/// The owner going in: once this returns, no helper is in until `owner_leave`, and the owner may
/// change its spans. No atomic read-modify-write, and no fence instruction once `membarrier` is
/// registered. The owner has priority: it keeps `busy` set while it waits, so a helper that is
/// only trying backs off, and one that is in finishes.
#[inline(always)]
pub(crate) fn owner_enter(s: &IdSlot) {
    if !owner_try_enter(s) {
        wait_for_helper(s);
    }
}

/// `owner_enter` without the wait: true if the owner is in; false if a helper is, in which case
/// `busy` stays set and the owner must `wait_for_helper` before it changes anything.
#[inline(always)]
pub(crate) fn owner_try_enter(s: &IdSlot) -> bool {
    debug_assert!(
        s.busy.load(Ordering::Relaxed) == 0,
        "owner side entered twice"
    );
    s.busy.store(1, Ordering::Relaxed);
    // The helper's membarrier supplies the CPU-level barrier between this store and the load
    // below (and without membarrier no helper goes in); keep the compiler from swapping them.
    // This is an asymmetric fence, as in liburcu and Folly: outside the Rust/C++ memory model
    // (which would allow both sides to read 0), so race detectors and model checkers (TSan,
    // Miri, loom) cannot check it; the argument is in the module docs.
    compiler_fence(Ordering::SeqCst);
    s.helper.load(Ordering::Acquire) == 0
}

/// The owner going out (publishes its changes to the next helper).
#[inline(always)]
pub(crate) fn owner_leave(s: &IdSlot) {
    s.busy.store(0, Ordering::Release);
}

/// Waits, with `busy` set, until no helper is in (spinning briefly, then yielding the CPU, since
/// the helper may be descheduled or waiting for a class lock).
#[cold]
#[inline(never)]
pub(crate) fn wait_for_helper(s: &IdSlot) {
    let mut spins = 0u32;
    while s.helper.load(Ordering::Acquire) != 0 {
        spins += 1;
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions and does not allocate.
            unsafe { libc::sched_yield() };
        }
    }
}

/// Held by a thread, in its slow paths, over its own spans (see the handshake in the module
/// docs); released on drop. The fast paths (bin push and pop, remote push) touch no span and
/// take nothing.
pub(crate) struct OwnGuard(pub(crate) Option<&'static IdSlot>);

impl OwnGuard {
    /// Owner id `id`'s slot, entered as its owner (the caller's own id; a no-op for `NO_ID`).
    #[inline]
    pub(crate) fn lock(id: u32) -> OwnGuard {
        let s = IDS.get(id.wrapping_sub(1) as usize);
        if let Some(s) = s {
            owner_enter(s);
        }
        OwnGuard(s)
    }
}

impl Drop for OwnGuard {
    #[inline]
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            owner_leave(s);
        }
    }
}

/// Held by a thread that empties another owner's inbox into that owner's spans; released on
/// drop. Never waits: `try_new` gives up if another helper is in or the owner is.
pub(crate) struct HelpGuard(&'static IdSlot);

impl HelpGuard {
    /// Goes in for owner `id` if neither the owner nor another helper is.
    pub(crate) fn try_new(id: u32) -> Option<HelpGuard> {
        let s = IDS.get(id.wrapping_sub(1) as usize)?;
        // After a miss, nobody tries this owner again for a while (see `last_help_us`).
        if now_us().saturating_sub(s.last_help_us.load(Ordering::Relaxed)) < STALLED_US {
            return None;
        }
        // The owner is in, or waiting for a helper with `busy` set: do not even try (so that a
        // waiting owner only waits for the helpers already under way).
        if s.busy.load(Ordering::Relaxed) != 0
            || s.helper
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        if !helper_fence() {
            s.helper.store(0, Ordering::Release);
            return None;
        }
        if s.busy.load(Ordering::Acquire) != 0 {
            s.last_help_us.store(now_us(), Ordering::Relaxed);
            s.helper.store(0, Ordering::Release);
            return None;
        }
        Some(HelpGuard(s))
    }
}

impl Drop for HelpGuard {
    #[inline]
    fn drop(&mut self) {
        self.0.helper.store(0, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::UnsafeCell;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    struct Shared(UnsafeCell<u64>);
    // SAFETY: the test only touches the cell while holding the id (owner or helper side).
    unsafe impl Sync for Shared {}

    /// The owner (through `OwnGuard`) and helpers (through `HelpGuard`) are never in at once: a
    /// plain counter that both sides increment non-atomically, with a pause between the read and
    /// the write, loses no increment.
    #[test]
    fn owner_and_helpers_exclude_each_other() {
        init_handshake();
        if !helping_enabled() {
            eprintln!("skipped: membarrier unavailable, so no thread ever helps");
            return;
        }
        let id = MAX_IDS as u32; // the last id: not handed out in a test process
        let cell = Arc::new(Shared(UnsafeCell::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let bump = |c: &Shared| {
            // SAFETY: the caller holds the id (see `Shared`).
            unsafe {
                let v = core::ptr::read_volatile(c.0.get());
                for _ in 0..20 {
                    core::hint::spin_loop();
                }
                core::ptr::write_volatile(c.0.get(), v + 1);
            }
        };
        let helpers: Vec<_> = (0..3)
            .map(|_| {
                let (cell, stop) = (cell.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // Lift the per-owner rate limit: this test wants every race it can get.
                        IDS[id as usize - 1]
                            .last_help_us
                            .store(0, Ordering::Relaxed);
                        if let Some(_g) = HelpGuard::try_new(id) {
                            bump(&cell);
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        let mut owner_n = 0u64;
        for _ in 0..600_000 {
            let _g = OwnGuard::lock(id);
            bump(&cell);
            owner_n += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let helper_n: u64 = helpers.into_iter().map(|h| h.join().unwrap()).sum();
        // SAFETY: every other thread has been joined.
        let total = unsafe { *cell.0.get() };
        assert_eq!(
            total,
            owner_n + helper_n,
            "helpers went in {helper_n} times"
        );
        assert!(helper_n > 0, "the helpers never got in");
    }
}
