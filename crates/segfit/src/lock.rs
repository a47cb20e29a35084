//! A futex-based mutex for the allocator's shared structures (central lists, page heap, registry).
//!
//! `std::sync::Mutex` would do on the lock path, but the allocator needs two things it cannot give:
//! a `const` lock it can force back to "unlocked" in a forked child whose other threads vanished
//! while holding it, and a guarantee that no path can panic. State: 0 free, 1 held, 2 held with
//! waiters (Drepper, "Futexes Are Tricky", mutex 2).

use core::sync::atomic::{AtomicU32, Ordering};

/// A small non-recursive mutual-exclusion lock.
pub struct Lock {
    state: AtomicU32,
}

impl Lock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        Lock {
            state: AtomicU32::new(0),
        }
    }

    /// Acquires the lock, sleeping in the kernel under contention.
    #[inline]
    pub fn lock(&self) {
        if self
            .state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
    }

    #[cold]
    fn lock_contended(&self) {
        for _ in 0..64 {
            core::hint::spin_loop();
            if self.state.load(Ordering::Relaxed) == 0
                && self
                    .state
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
        }
        while self.state.swap(2, Ordering::Acquire) != 0 {
            // SAFETY: futex(FUTEX_WAIT_PRIVATE) on a valid, aligned u32 that lives as long as the
            // lock; a spurious wake-up only loops again.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.state.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    2u32,
                    core::ptr::null::<libc::timespec>(),
                );
            }
        }
    }

    /// Releases the lock. The caller must hold it.
    #[inline]
    pub fn unlock(&self) {
        if self.state.swap(0, Ordering::Release) == 2 {
            // SAFETY: futex(FUTEX_WAKE_PRIVATE) on the lock word wakes at most one waiter.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.state.as_ptr(),
                    libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                    1i32,
                );
            }
        }
    }

    /// Forces the lock to the unlocked state. Only for a forked child, where the holder is gone.
    pub fn reset(&self) {
        self.state.store(0, Ordering::Relaxed);
    }

    /// Whether some thread holds the lock (for assertions).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 0
    }
}

impl Default for Lock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_other_threads() {
        struct Shared {
            lock: Lock,
            value: core::cell::UnsafeCell<u64>,
        }
        // SAFETY: `value` is only touched with `lock` held.
        unsafe impl Sync for Shared {}
        let s = Arc::new(Shared {
            lock: Lock::new(),
            value: 0.into(),
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        s.lock.lock();
                        // SAFETY: the lock is held.
                        unsafe { *s.value.get() += 1 };
                        s.lock.unlock();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: all writers joined.
        assert_eq!(unsafe { *s.value.get() }, 80_000);
        assert!(!s.lock.is_locked());
    }
}
