//! Fork safety: `pthread_atfork` handlers that take every allocator lock before `fork()`, release
//! them in the parent, and re-create them in the child (whose other threads are gone, possibly
//! while holding a lock). Installed once by `cache::global_init`, for Rust programs and the C
//! library alike.
//!
//! In a process that has never created a thread no other thread can hold a lock, so the handlers
//! do nothing there (as glibc's malloc does): `fork()` from a signal handler that interrupted
//! `malloc` then cannot deadlock.

use core::sync::atomic::{AtomicBool, Ordering};

static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Set by `prepare` when it skipped locking (single-threaded process).
static SKIPPED: AtomicBool = AtomicBool::new(false);

extern "C" {
    /// glibc (2.32+): non-zero while the process has never created a thread.
    static __libc_single_threaded: libc::c_char;
}

fn single_threaded() -> bool {
    // SAFETY: a byte-sized variable glibc exports for exactly this kind of read.
    unsafe { core::ptr::read_volatile(&raw const __libc_single_threaded) != 0 }
}

extern "C" fn prepare() {
    if single_threaded() {
        SKIPPED.store(true, Ordering::Relaxed);
        return;
    }
    SKIPPED.store(false, Ordering::Relaxed);
    crate::fork_prepare();
}

extern "C" fn parent() {
    if !SKIPPED.load(Ordering::Relaxed) {
        crate::fork_parent();
    }
}

extern "C" fn child() {
    if !SKIPPED.load(Ordering::Relaxed) {
        crate::fork_child();
    }
}

/// Registers the handlers (once). `pthread_atfork` may allocate: callers must not hold an
/// allocator lock or be inside `global_init`'s critical section.
pub(crate) fn install() {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers have the C ABI and take no arguments.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}
