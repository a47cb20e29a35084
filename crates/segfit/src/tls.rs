//! The one thread-local slot of segfit: a pointer to this thread's cache.
//!
//! It starts out pointing at a static, read-only, always-empty cache (`cache::UNINIT`), so the
//! malloc and free fast paths need no "initialised?" test: an empty cache sends them to the slow
//! path, which sets the thread up. After the thread's cache is torn down it points at another
//! read-only empty cache (`cache::DEAD`). Keeping the access in this module lets the C library
//! build choose how the slot is reached (see MISSION.md §7 on the TLS model).
//!
//! Two implementations, chosen at build time:
//! - default: a Rust `thread_local!`. In an executable this is one `%fs:`-relative access; in a
//!   `cdylib` it is a call to `__tls_get_addr` per access (general-dynamic model).
//! - feature `initial-exec` (x86_64 Linux only): the slot is a hidden thread-local symbol placed in
//!   `.tbss` by `global_asm!` and reached through `sym@GOTTPOFF(%rip)` plus `%fs:` (initial-exec
//!   model: two loads, no call). A shared library built this way is marked `STATIC_TLS`: it can be
//!   preloaded or linked, but a late `dlopen` may fail once the static TLS surplus is used up.
//!   The slot lives in `.tdata` with `cache::UNINIT`'s address as its initial value (a relative
//!   relocation in the TLS template, which the loader applies before it copies the template for
//!   the first thread), so `get()` is the two loads and nothing else.
//!
//! Invariant: `get()` never returns null; it returns `UNINIT_PTR` until the first `set()` in the
//! thread. Called by `alloc` (fast paths) and `cache` (thread setup and teardown).

use crate::cache::ThreadCache;

#[cfg(not(any(
    feature = "std",
    test,
    all(feature = "initial-exec", target_arch = "x86_64", target_os = "linux")
)))]
compile_error!(
    "segfit without the `std` feature needs `initial-exec` (x86_64 Linux) for its TLS slot"
);

#[cfg(not(all(feature = "initial-exec", target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use crate::cache::ThreadCache;
    use core::cell::Cell;

    thread_local! {
        static SLOT: Cell<*mut ThreadCache> = const { Cell::new(crate::cache::UNINIT_PTR) };
    }

    #[inline(always)]
    pub fn get() -> *mut ThreadCache {
        SLOT.with(|s| s.get())
    }

    #[inline(always)]
    pub fn set(tc: *mut ThreadCache) {
        SLOT.with(|s| s.set(tc))
    }

    /// Which model this build uses (for tests and diagnostics).
    pub const MODEL: &str = "general-dynamic (thread_local!)";
}

#[cfg(all(feature = "initial-exec", target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use crate::cache::ThreadCache;

    // One 8-byte, 8-aligned thread-local word in `.tdata`, initialised to the address of the
    // static `UNINIT` cache. Global but hidden, so the `asm!` below (possibly in another codegen
    // unit) resolves it at link time without exporting it from the shared library.
    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 3",
        ".globl __segfit_tls_slot",
        ".hidden __segfit_tls_slot",
        ".type __segfit_tls_slot,@object",
        ".size __segfit_tls_slot,8",
        "__segfit_tls_slot:",
        ".quad {uninit}",
        ".popsection",
        uninit = sym crate::cache::UNINIT,
        options(att_syntax)
    );

    #[inline(always)]
    pub fn get() -> *mut ThreadCache {
        let v: *mut ThreadCache;
        // SAFETY: reads this thread's 8-byte slot: the GOT entry holds the slot's offset from the
        // thread pointer (R_X86_64_TPOFF64, resolved by the loader since the object is STATIC_TLS).
        unsafe {
            core::arch::asm!(
                "mov {off}, qword ptr [rip + __segfit_tls_slot@GOTTPOFF]",
                "mov {v}, qword ptr fs:[{off}]",
                off = out(reg) _,
                v = lateout(reg) v,
                options(nostack, readonly, preserves_flags, pure)
            );
        }
        v
    }

    #[inline(always)]
    pub fn set(tc: *mut ThreadCache) {
        // SAFETY: writes this thread's 8-byte slot (see `get`).
        unsafe {
            core::arch::asm!(
                "mov {off}, qword ptr [rip + __segfit_tls_slot@GOTTPOFF]",
                "mov qword ptr fs:[{off}], {v}",
                off = out(reg) _,
                v = in(reg) tc,
                options(nostack, preserves_flags)
            );
        }
    }

    /// Which model this build uses (for tests and diagnostics).
    pub const MODEL: &str = "initial-exec (global_asm .tbss + GOTTPOFF)";
}

/// The TLS model of this build, as a human-readable string.
pub const MODEL: &str = imp::MODEL;

/// This thread's cache pointer (never null).
#[inline(always)]
pub fn get() -> *mut ThreadCache {
    imp::get()
}

/// Points this thread's slot at `tc`.
#[inline]
pub fn set(tc: *mut ThreadCache) {
    imp::set(tc)
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

    #[test]
    fn set_is_per_thread_and_round_trips() {
        std::thread::spawn(|| {
            let start = get();
            assert_eq!(start, crate::cache::UNINIT_PTR);
            let mut fake = 0u64;
            let p = (&raw mut fake).cast::<ThreadCache>();
            set(p);
            assert_eq!(get(), p);
            // Another thread is unaffected.
            let other = std::thread::spawn(|| get() as usize).join().unwrap();
            assert_eq!(other, crate::cache::UNINIT_PTR as usize);
            // Any value round-trips.
            let low = core::ptr::without_provenance_mut::<ThreadCache>(16);
            set(low);
            assert_eq!(get() as usize, 16);
            set(start);
            assert_eq!(get(), crate::cache::UNINIT_PTR);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn reports_its_model() {
        #[cfg(all(feature = "initial-exec", target_arch = "x86_64", target_os = "linux"))]
        assert!(MODEL.starts_with("initial-exec"));
        #[cfg(not(all(feature = "initial-exec", target_arch = "x86_64", target_os = "linux")))]
        assert!(MODEL.starts_with("general-dynamic"));
    }
}
