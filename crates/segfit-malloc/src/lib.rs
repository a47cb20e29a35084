//! # libsegfit — segfit as a drop-in C `malloc`
//!
//! This crate exports the C and POSIX allocation functions (`malloc`, `free`, `calloc`,
//! `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`, `memalign`, `valloc`, `pvalloc`,
//! `malloc_usable_size`, `malloc_trim`, `free_sized`, `free_aligned_sized`, `cfree`) and segfit's
//! extras (`segfit_collect`, `segfit_stats_print`, `segfit_stats_print_fd`, see
//! `include/segfit.h`) over the core crate `segfit` (here renamed `segfit_core`). It builds as
//! `libsegfit.so` (for `LD_PRELOAD` or `-lsegfit`) and `libsegfit.a`.
//!
//! Contract (see `/work/shared/CONTRACT.md`): glibc's behaviour wherever the standards leave room.
//! - `errno` is unchanged by every successful call and by `free`; failures set `ENOMEM` (or
//!   `EINVAL` for a bad alignment) exactly where glibc does. The core never sets `errno` itself,
//!   but its system calls may clobber it, so every path that can reach the core's slow path saves
//!   and restores it. The only path that does not is `malloc`'s and `free`'s fast path, which
//!   makes no system call. (`free`'s slow paths make only `madvise`/`munmap` calls, which do not
//!   touch `errno` when they succeed and abort the process when they fail.)
//! - `realloc(p, 0)` frees `p` and returns NULL (glibc); `realloc(NULL, n)` is `malloc(n)`.
//! - Invalid pointers, interior pointers and double frees abort with one line
//!   `segfit: fatal: <op>(): <what> ptr=0x…` (the core's `fatal`).
//!
//! Initialisation is lazy (`init`): the first allocation that reaches a slow path runs it, so
//! calls from the dynamic loader and from constructors before `main` work. Nothing here allocates
//! through the heap, panics, or unwinds.

// No std: the library is the core, `libc` and these exports (see the core's `std` feature).
#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]
// The exported functions are the C ABI: their safety contract is the C standard's, documented
// in include/segfit.h rather than in a `# Safety` section per function.
#![allow(clippy::missing_safety_doc)]

mod init;
mod report;

/// Without std (the default build: the core without its `std` feature) nothing provides a panic
/// handler. None of segfit's paths can panic (misuse and corrupted metadata end in the core's
/// `fatal`; `tests/no_panic.rs` walks the call graph of every entry point), so this is never
/// reached; it ends the process like `fatal`. Not when the core has std (the general-dynamic
/// build, or a workspace build that unified features; see `build.rs`), and not in this crate's
/// own test build, which links std.
#[cfg(not(any(test, segfit_core_std)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    segfit_core::fatal::fatal("segfit", "panic (a bug in segfit)", 0)
}

// The precompiled `core` names the unwinder's personality routine in its unwind tables even when
// nothing unwinds, and without std nothing defines it: an unoptimised libsegfit.so would be left
// with an undefined `rust_eh_personality` and programs linking it would fail. This hidden
// definition satisfies the reference without exporting anything; it is never called (the
// library is built with `panic = "abort"`, and nothing in it unwinds).
#[cfg(not(any(test, segfit_core_std)))]
core::arch::global_asm!(
    ".pushsection .text.rust_eh_personality,\"ax\",@progbits",
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
    ".type rust_eh_personality,@function",
    "rust_eh_personality:",
    "ud2",
    ".size rust_eh_personality,.-rust_eh_personality",
    ".popsection",
);

use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};
use segfit_core::alloc as core_alloc;
use segfit_core::config::{MAX_SMALL, MIN_ALIGN};

/// This thread's `errno` slot.
#[inline(always)]
fn errno() -> *mut c_int {
    // SAFETY: `__errno_location` has no preconditions and returns this thread's errno.
    unsafe { libc::__errno_location() }
}

/// Saves `errno` on creation; `ok(p)` restores it for a non-null `p` or sets `ENOMEM`.
struct Errno(c_int);

impl Errno {
    #[inline(always)]
    fn save() -> Self {
        // SAFETY: `errno()` is a valid pointer to this thread's errno.
        Errno(unsafe { *errno() })
    }

    #[inline(always)]
    fn restore(&self) {
        // SAFETY: as in `save`.
        unsafe { *errno() = self.0 }
    }

    /// Returns `p`; `errno` is restored if `p` is non-null, set to `ENOMEM` otherwise.
    #[inline(always)]
    fn ok(&self, p: *mut u8) -> *mut c_void {
        if p.is_null() {
            set_errno(libc::ENOMEM);
        } else {
            self.restore();
        }
        p.cast()
    }
}

#[cold]
fn set_errno(e: c_int) {
    // SAFETY: `errno()` is a valid pointer to this thread's errno.
    unsafe { *errno() = e }
}

/// Whether a `malloc(size)` will be served by the thread cache's fast path (a non-empty bin), so
/// no system call and no setup can happen. The same loads as the core's fast path, which the
/// compiler merges with it.
#[inline(always)]
fn fast_ready(size: usize) -> bool {
    if size > MAX_SMALL {
        return false;
    }
    let off = segfit_core::size_class::bin_offset(size);
    let tc = segfit_core::tls::get();
    // SAFETY: the slot always points at a valid cache; `off` is a class's bin offset.
    unsafe { !(*segfit_core::cache::bin_at(tc, off)).head.is_null() }
}

/// `malloc` with setup, `errno` handling: the slow path of every allocating entry point.
#[cold]
#[inline(never)]
fn alloc_slow(size: usize, align: usize, zero: bool) -> *mut c_void {
    init::ensure();
    let e = Errno::save();
    let p = if zero {
        core_alloc::calloc_aligned_c(size, align)
    } else if align <= MIN_ALIGN {
        core_alloc::malloc_c(size)
    } else {
        core_alloc::malloc_aligned_c(size, align)
    };
    e.ok(p)
}

/// The OS page size (read once; `sysconf` does not allocate).
fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let v = if v > 0 && (v as usize).is_power_of_two() {
        v as usize
    } else {
        4096
    };
    PAGE.store(v, Ordering::Relaxed);
    v
}

/// C `malloc`. `malloc(0)` returns a unique, freeable pointer.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    if fast_ready(size) {
        return core_alloc::malloc_c(size).cast();
    }
    alloc_slow(size, MIN_ALIGN, false)
}

/// C `free`. Null is ignored; invalid pointers and double frees abort with one line.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the caller passes null or a live block (anything else is detected and aborts).
    unsafe { core_alloc::free(p.cast()) }
}

/// Old SunOS/glibc alias of `free`.
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: as `free`.
    unsafe { free(p) }
}

/// C23 `free_sized`: frees `p`, which was allocated with `size` bytes. The pointer is validated
/// like `free`'s, and a `size` that does not match the block aborts with one line.
#[no_mangle]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    if !p.is_null() {
        core_alloc::check_sized(p.cast(), size, MIN_ALIGN, "free_sized");
    }
    // SAFETY: as `free`.
    unsafe { free(p) }
}

/// C23 `free_aligned_sized`: frees `p`, allocated at `align` with `size` bytes. A pointer that
/// is not aligned to `align` (or an `align` that is not a power of two) aborts with one line.
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    if !p.is_null() && (!align.is_power_of_two() || (p as usize) & (align - 1) != 0) {
        segfit_core::fatal::fatal(
            "free_aligned_sized",
            "alignment mismatch (sized deallocation with the wrong alignment)",
            p as usize,
        );
    }
    if !p.is_null() {
        core_alloc::check_sized(p.cast(), size, align, "free_aligned_sized");
    }
    // SAFETY: as `free`.
    unsafe { free(p) }
}

/// C `calloc`: zeroed; an overflowing `n * size` returns NULL with `ENOMEM`.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => alloc_slow(total, MIN_ALIGN, true),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// C `realloc`: NULL `p` is `malloc(size)`; size 0 frees `p` and returns NULL (glibc, `errno`
/// unchanged); on failure NULL with `ENOMEM`, `p` untouched.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        // SAFETY: plain malloc.
        return unsafe { malloc(size) };
    }
    if size == 0 {
        // SAFETY: `p` is a live block the caller gives up (realloc contract).
        unsafe { free(p) };
        return ptr::null_mut();
    }
    init::ensure();
    let e = Errno::save();
    // SAFETY: `p` is a live block (validated by the core, which aborts otherwise).
    let q = unsafe { core_alloc::realloc_c(p.cast(), size) };
    e.ok(q)
}

/// `reallocarray`: `realloc(p, n * size)`, with NULL and `ENOMEM` (and `p` untouched) if the
/// product overflows.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: as `realloc`.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// Allocates `size` bytes at `align` (a power of two), with `errno` handling.
fn aligned(align: usize, size: usize) -> *mut c_void {
    debug_assert!(align.is_power_of_two());
    let p = aligned_fast(align, size);
    if !p.is_null() {
        return p;
    }
    alloc_slow(size, align.max(MIN_ALIGN), false)
}

/// The aligned allocation if the class's bin has an object (no OS call, so `errno` is untouched);
/// null otherwise (take the slow path).
#[inline(always)]
fn aligned_fast(align: usize, size: usize) -> *mut c_void {
    if align <= MIN_ALIGN {
        if fast_ready(size) {
            return core_alloc::malloc_c(size).cast();
        }
    } else if align <= segfit_core::config::PAGE_SIZE {
        if let Some(c) = segfit_core::size_class::class_of_aligned(size, align) {
            let tc = segfit_core::tls::get();
            // SAFETY: the slot always points at a valid cache; `c < NUM_CLASSES`.
            if unsafe { !(*tc).bins.get_unchecked(c).head.is_null() } {
                return core_alloc::malloc_aligned_c(size, align).cast();
            }
        }
    }
    ptr::null_mut()
}

/// POSIX `posix_memalign`: `align` must be a power-of-two multiple of `sizeof(void *)` (else
/// `EINVAL`); `ENOMEM` if out of memory. On failure `*memptr` is untouched. Never changes `errno`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    let word = core::mem::size_of::<*mut c_void>();
    if align & (word - 1) != 0 || !(align / word).is_power_of_two() {
        return libc::EINVAL;
    }
    let mut p = aligned_fast(align, size);
    if p.is_null() {
        let e = Errno::save();
        p = aligned(align, size);
        e.restore();
        if p.is_null() {
            return libc::ENOMEM;
        }
    }
    // SAFETY: the caller passes a valid `memptr`.
    unsafe { *memptr = p };
    0
}

/// C11 `aligned_alloc`: `align` zero or not a power of two gives NULL with `EINVAL` (glibc 2.38+);
/// any size is accepted (C17).
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align, size)
}

/// glibc `memalign`: a non-power-of-two `align` is rounded up to one; above `SIZE_MAX / 2 + 1`
/// gives NULL with `EINVAL`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    if align > usize::MAX / 2 + 1 {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    // Cannot overflow: align <= 2^63.
    aligned(align.max(1).next_power_of_two(), size)
}

/// `valloc`: page-aligned.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(page_size(), size)
}

/// `pvalloc`: page-aligned, the size rounded up to a whole number of pages (`ENOMEM` if that
/// overflows).
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.checked_add(page - 1) {
        Some(s) => aligned(page, s & !(page - 1)),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// glibc `malloc_usable_size`: 0 for NULL; invalid pointers abort.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    core_alloc::usable_size(p.cast())
}

/// glibc `malloc_trim`: gives free memory back to the OS (`segfit::collect`); returns 1 if some
/// was released. The padding argument is ignored.
#[no_mangle]
pub unsafe extern "C" fn malloc_trim(_pad: usize) -> c_int {
    c_int::from(segfit_collect() > 0)
}

/// segfit: flushes this thread's cache and returns every free page to the OS. Returns the bytes
/// released.
#[no_mangle]
pub extern "C" fn segfit_collect() -> usize {
    let e = Errno::save();
    let n = segfit_core::collect();
    e.restore();
    n
}

/// segfit: writes statistics lines (`segfit: stats: …`) to file descriptor `fd`. Allocates nothing.
#[no_mangle]
pub extern "C" fn segfit_stats_print_fd(fd: c_int) {
    let e = Errno::save();
    report::print_fd(fd);
    e.restore();
}

/// segfit: writes the statistics as one JSON object (and a newline) to file descriptor `fd`.
/// Allocates nothing.
#[no_mangle]
pub extern "C" fn segfit_stats_json_fd(fd: c_int) {
    let e = Errno::save();
    let mut w = segfit_core::fatal::FdWriter::new(fd);
    let _ = segfit_core::stats().write_json(&mut w);
    let _ = core::fmt::Write::write_str(&mut w, "\n");
    w.flush();
    e.restore();
}

/// segfit: writes a heap map — every span of every arena and every huge block, as a JSON array
/// (see the core's `snapshot` module) — to file descriptor `fd`. Allocates nothing.
#[no_mangle]
pub extern "C" fn segfit_heap_json_fd(fd: c_int) {
    let e = Errno::save();
    let mut w = segfit_core::fatal::FdWriter::new(fd);
    let _ = segfit_core::snapshot::stream_json(&mut w);
    let _ = core::fmt::Write::write_str(&mut w, "\n");
    w.flush();
    e.restore();
}

/// segfit: flushes `f` and writes statistics to its file descriptor (NULL means stderr).
/// Allocates nothing beyond what `fflush` may.
#[no_mangle]
pub unsafe extern "C" fn segfit_stats_print(f: *mut libc::FILE) {
    let fd = if f.is_null() {
        2
    } else {
        // SAFETY: the caller passes a valid open stream.
        unsafe {
            libc::fflush(f);
            libc::fileno(f)
        }
    };
    if fd >= 0 {
        segfit_stats_print_fd(fd);
    }
}
