//! The optional background scavenger: a thread that applies the page heap's scavenge policy
//! every period, so a program that goes idle still gives its free pages back (the page heap
//! otherwise applies the policy only from its own slow paths).
//!
//! Started explicitly (`segfit::scavenger::start`, or `SEGFIT_SCAVENGER=1` in the C library),
//! never from inside an allocation: creating a thread allocates. At most one runs.

use crate::page_heap;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static RUNNING: AtomicBool = AtomicBool::new(false);
static PERIOD_MS: AtomicU64 = AtomicU64::new(250);

extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    loop {
        let ms = PERIOD_MS.load(Ordering::Relaxed);
        let ts = libc::timespec {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
        };
        // SAFETY: nanosleep only reads `ts`; an interrupted sleep just ends early.
        unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
        crate::cache::release_parked(false);
        page_heap::with(|h| {
            let now = page_heap::now_ms();
            h.scavenge(now);
        });
    }
}

/// Starts the background scavenger, waking every `period_ms` milliseconds. Returns `false` if
/// it was already running or the thread could not be created. Call it outside allocator paths.
pub fn start(period_ms: u64) -> bool {
    PERIOD_MS.store(period_ms.max(10), Ordering::Relaxed);
    if RUNNING.swap(true, Ordering::AcqRel) {
        return false;
    }
    let mut tid: libc::pthread_t = 0;
    // SAFETY: `run` has the pthread start-routine ABI and ignores its argument.
    let ok =
        unsafe { libc::pthread_create(&mut tid, core::ptr::null(), run, core::ptr::null_mut()) }
            == 0;
    if ok {
        // SAFETY: `tid` is a thread we just created and never join.
        unsafe { libc::pthread_detach(tid) };
    } else {
        RUNNING.store(false, Ordering::Release);
    }
    ok
}

/// In a forked child the scavenger thread did not survive: allow starting a new one.
pub(crate) fn after_fork_child() {
    RUNNING.store(false, Ordering::Release);
}

/// Whether the background scavenger runs.
pub fn running() -> bool {
    RUNNING.load(Ordering::Acquire)
}

/// Sets the page heap's scavenge policy (see [`page_heap::ScavengePolicy`]).
pub fn set_policy(p: page_heap::ScavengePolicy) {
    page_heap::with(|h| h.policy = p);
}
