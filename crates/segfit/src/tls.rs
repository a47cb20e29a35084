//! The one thread-local slot of segfit: a pointer to this thread's cache.
//!
//! It starts out pointing at a static, read-only, always-empty cache (`cache::UNINIT`), so the
//! malloc and free fast paths need no "initialised?" test: an empty cache sends them to the slow
//! path, which sets the thread up. After the thread's cache is torn down it points at another
//! read-only empty cache (`cache::DEAD`). Keeping the access in this module lets the C library
//! build choose how the slot is reached (see MISSION.md §7 on the TLS model).

use crate::cache::ThreadCache;
use core::cell::Cell;

thread_local! {
    static SLOT: Cell<*mut ThreadCache> = const { Cell::new(crate::cache::UNINIT_PTR) };
}

/// This thread's cache pointer (never null).
#[inline(always)]
pub fn get() -> *mut ThreadCache {
    SLOT.with(|s| s.get())
}

/// Points this thread's slot at `tc`.
#[inline]
pub fn set(tc: *mut ThreadCache) {
    SLOT.with(|s| s.set(tc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_starts_uninitialised() {
        let here = get();
        assert!(!here.is_null());
        let there = std::thread::spawn(|| get() as usize).join().unwrap();
        assert_eq!(there, crate::cache::UNINIT_PTR as usize);
    }
}
