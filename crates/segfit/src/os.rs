//! The OS layer: every system call segfit makes to get or give back memory goes through here.
//!
//! Address space is reserved `PROT_NONE` (arenas), committed with `mprotect`, given back with
//! `madvise(MADV_DONTNEED)`, and huge blocks are mapped and unmapped directly. Each call is counted
//! by [`Why`] (calls and bytes), and, when tracing is on, printed as one strace-like line tagged with
//! its reason. A failed map returns null and a failed commit returns `false`: callers turn that into
//! a null allocation, never a panic. An unexpected `munmap`/`madvise` failure is fatal: it means the
//! allocator's view of the address space is wrong.
//!
//! Called by: `arena` (reserve, commit), `page_heap` (purge), `huge` (map/unmap), `meta` (metadata).

use crate::fatal::{fatal, StackBuf};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Why segfit made an OS call; the counters and the trace are kept per reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Why {
    /// `mmap(PROT_NONE)`: address space reserved for an arena.
    ArenaReserve = 0,
    /// `mprotect(READ|WRITE)`: part of an arena committed for use.
    Commit = 1,
    /// `madvise(DONTNEED)`: free pages given back to the OS.
    Purge = 2,
    /// `mmap`: a huge block mapped directly.
    HugeMap = 3,
    /// `munmap`: a huge block unmapped on free.
    HugeUnmap = 4,
    /// `mremap`: a huge block resized.
    HugeRemap = 5,
    /// `mmap`: allocator metadata (spans, arena page maps, thread caches).
    Meta = 6,
    /// `munmap`: the unaligned ends of an over-sized mapping trimmed off.
    Trim = 7,
}

/// Number of [`Why`] kinds.
pub const WHY_COUNT: usize = 8;

impl Why {
    /// Every kind, in counter order.
    pub const ALL: [Why; WHY_COUNT] = [
        Why::ArenaReserve,
        Why::Commit,
        Why::Purge,
        Why::HugeMap,
        Why::HugeUnmap,
        Why::HugeRemap,
        Why::Meta,
        Why::Trim,
    ];

    /// A short name, used in traces and statistics.
    pub const fn name(self) -> &'static str {
        match self {
            Why::ArenaReserve => "arena-reserve",
            Why::Commit => "commit",
            Why::Purge => "purge",
            Why::HugeMap => "huge-map",
            Why::HugeUnmap => "huge-unmap",
            Why::HugeRemap => "huge-remap",
            Why::Meta => "metadata",
            Why::Trim => "trim",
        }
    }
}

/// Calls and bytes for one [`Why`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OsCount {
    /// System calls made.
    pub calls: u64,
    /// Bytes they covered.
    pub bytes: u64,
}

static CALLS: [AtomicU64; WHY_COUNT] = [const { AtomicU64::new(0) }; WHY_COUNT];
static BYTES: [AtomicU64; WHY_COUNT] = [const { AtomicU64::new(0) }; WHY_COUNT];
static TRACE: AtomicBool = AtomicBool::new(false);

/// Snapshot of the OS-call counters, indexed like [`Why::ALL`].
pub fn counts() -> [OsCount; WHY_COUNT] {
    let mut out = [OsCount::default(); WHY_COUNT];
    for (i, o) in out.iter_mut().enumerate() {
        o.calls = CALLS[i].load(Ordering::Relaxed);
        o.bytes = BYTES[i].load(Ordering::Relaxed);
    }
    out
}

/// Turns the strace-like trace of segfit's OS calls (to stderr) on or off.
pub fn set_trace(on: bool) {
    TRACE.store(on, Ordering::Relaxed);
}

fn record(why: Why, bytes: usize) {
    CALLS[why as usize].fetch_add(1, Ordering::Relaxed);
    BYTES[why as usize].fetch_add(bytes as u64, Ordering::Relaxed);
}

/// Prints `mmap(NULL, 67108864, PROT_NONE, ...) = 0x7f... [arena-reserve]` style lines.
fn trace(call: &str, addr: usize, len: usize, rest: &str, ret: usize, why: Why) {
    if !TRACE.load(Ordering::Relaxed) {
        return;
    }
    let mut b = StackBuf::new();
    b.str("segfit: ").str(call).str("(");
    if addr == 0 {
        b.str("NULL");
    } else {
        b.hex(addr);
    }
    b.str(", ").dec(len as u64).str(rest).str(") = ");
    if ret == usize::MAX {
        b.str("-1");
    } else if call == "mmap" || call == "mremap" {
        b.hex(ret);
    } else {
        b.dec(ret as u64);
    }
    b.str("  [").str(why.name()).str("]\n");
    b.write_to(2);
}

fn mmap_raw(len: usize, prot: i32, why: Why, rest: &str) -> *mut u8 {
    // Reservations skip the kernel's overcommit accounting; read-write maps keep it, so that an
    // impossible request (more than RAM + swap) fails here as it does under glibc.
    let noreserve = if prot == libc::PROT_NONE {
        libc::MAP_NORESERVE
    } else {
        0
    };
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | noreserve;
    // SAFETY: an anonymous private mapping at an address of the kernel's choice touches no
    // existing memory.
    let p = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        trace("mmap", 0, len, rest, usize::MAX, why);
        return ptr::null_mut();
    }
    record(why, len);
    trace("mmap", 0, len, rest, p as usize, why);
    p.cast()
}

/// Maps `len` bytes, aligned to `align` (a power of two, at least the OS page size), trimming the
/// over-allocation. Returns null on failure.
fn map_aligned(len: usize, align: usize, prot: i32, why: Why, rest: &str) -> *mut u8 {
    let Some(over) = len.checked_add(align) else {
        return ptr::null_mut();
    };
    let p = mmap_raw(over, prot, why, rest);
    if p.is_null() {
        return p;
    }
    let start = p as usize;
    let aligned = (start + align - 1) & !(align - 1);
    if aligned > start {
        unmap(start as *mut u8, aligned - start, Why::Trim);
    }
    let end = aligned + len;
    if start + over > end {
        unmap(end as *mut u8, start + over - end, Why::Trim);
    }
    aligned as *mut u8
}

/// Reserves `len` bytes of address space, `PROT_NONE`, aligned to `align`. Null on failure.
pub fn reserve(len: usize, align: usize) -> *mut u8 {
    map_aligned(
        len,
        align,
        libc::PROT_NONE,
        Why::ArenaReserve,
        ", PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, -1, 0",
    )
}

/// Maps `len` zeroed read-write bytes aligned to `align` for `why` (huge blocks, metadata).
pub fn map(len: usize, align: usize, why: Why) -> *mut u8 {
    const RW: &str = ", PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0";
    if align <= page_size() {
        mmap_raw(len, libc::PROT_READ | libc::PROT_WRITE, why, RW)
    } else {
        map_aligned(len, align, libc::PROT_READ | libc::PROT_WRITE, why, RW)
    }
}

/// Makes `[addr, addr+len)` of a reservation readable and writable. `false` on failure (ENOMEM).
///
/// # Safety
/// The range must lie inside a reservation made by [`reserve`].
pub unsafe fn commit(addr: *mut u8, len: usize) -> bool {
    // SAFETY: the caller guarantees the range is ours, so changing its protection affects no one
    // else's memory.
    let r = unsafe { libc::mprotect(addr.cast(), len, libc::PROT_READ | libc::PROT_WRITE) };
    trace(
        "mprotect",
        addr as usize,
        len,
        ", PROT_READ|PROT_WRITE",
        if r == 0 { 0 } else { usize::MAX },
        Why::Commit,
    );
    if r != 0 {
        return false;
    }
    record(Why::Commit, len);
    true
}

/// Gives the pages of `[addr, addr+len)` back to the OS; they read as zero afterwards.
///
/// # Safety
/// The range must be committed memory of segfit's that holds no live data.
pub unsafe fn purge(addr: *mut u8, len: usize) {
    // SAFETY: the caller guarantees nothing live is in the range; MADV_DONTNEED on private
    // anonymous memory only drops its contents.
    let r = unsafe { libc::madvise(addr.cast(), len, libc::MADV_DONTNEED) };
    trace(
        "madvise",
        addr as usize,
        len,
        ", MADV_DONTNEED",
        if r == 0 { 0 } else { usize::MAX },
        Why::Purge,
    );
    if r != 0 {
        fatal("madvise", "unexpected madvise error", addr as usize);
    }
    record(Why::Purge, len);
}

/// Unmaps `[addr, addr+len)`. An error means segfit's bookkeeping is wrong: fatal.
pub fn unmap(addr: *mut u8, len: usize, why: Why) {
    // SAFETY: callers pass only ranges they mapped and no longer use.
    let r = unsafe { libc::munmap(addr.cast(), len) };
    trace(
        "munmap",
        addr as usize,
        len,
        "",
        if r == 0 { 0 } else { usize::MAX },
        why,
    );
    if r != 0 {
        fatal("munmap", "unexpected munmap error", addr as usize);
    }
    record(why, len);
}

/// Resizes a huge mapping in place (no move). Returns `false` if the kernel cannot.
///
/// # Safety
/// `[addr, addr+old)` must be a whole mapping made by [`map`].
pub unsafe fn remap_in_place(addr: *mut u8, old: usize, new: usize) -> bool {
    // SAFETY: without MREMAP_MAYMOVE the mapping either grows/shrinks where it is or fails.
    let p = unsafe { libc::mremap(addr.cast(), old, new, 0) };
    let ok = p != libc::MAP_FAILED;
    trace(
        "mremap",
        addr as usize,
        new,
        "",
        if ok { p as usize } else { usize::MAX },
        Why::HugeRemap,
    );
    if ok {
        record(Why::HugeRemap, new);
    }
    ok
}

/// The OS page size (4096 on x86_64 Linux).
pub fn page_size() -> usize {
    4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_aligned_and_counted() {
        let before = counts()[Why::ArenaReserve as usize];
        let p = reserve(1 << 20, 1 << 22);
        assert!(!p.is_null());
        assert_eq!(p as usize % (1 << 22), 0);
        let after = counts()[Why::ArenaReserve as usize];
        assert!(after.calls > before.calls);
        // SAFETY: the range was just reserved by us.
        assert!(unsafe { commit(p, 1 << 20) });
        // SAFETY: committed, so writable.
        unsafe { p.write_bytes(7, 1 << 20) };
        // SAFETY: ours, holding nothing live.
        unsafe { purge(p, 1 << 20) };
        // SAFETY: purged pages read back as zero.
        assert_eq!(unsafe { *p.add(12345) }, 0);
        unmap(p, 1 << 20, Why::Trim);
    }

    #[test]
    fn impossible_map_returns_null() {
        assert!(map(usize::MAX - 4095, 4096, Why::HugeMap).is_null());
        assert!(reserve(usize::MAX / 2, 1 << 26).is_null());
    }
}
