//! Arenas and the address → span map (Go's `mheap.arenas` / `heapArena.spans`).
//!
//! Address space comes from the OS in 64 MiB arenas, reserved `PROT_NONE` and aligned to their
//! size, then committed front to back in 2 MiB steps as the page heap hands out pages (the committed part
//! is a prefix: a span is committed iff it ends below `committed`). A global table
//! with one slot per 64 MiB of the address space (2^21 slots, 16 MiB of zero-filled `.bss` that is
//! only touched where arenas exist) points to each arena's metadata, whose page map gives the span
//! of every page. So `free(p)` finds its span in two loads: `ARENAS[p >> 26].pages[(p >> 13) % 8192]`.
//!
//! Huge blocks (mapped directly) are registered in a second table with the same indexing; they are
//! aligned to 64 MiB so that no slot is shared.
//!
//! Invariants: a slot is written once (arena slots are never cleared: arenas are never unmapped) or,
//! for huge blocks, set and cleared under the page heap lock. Page map entries are written under the
//! page heap lock and read without it (relaxed atomics): an entry is non-null exactly for the pages
//! of in-use spans and for the first and last page of free spans.

use crate::config::{
    ARENA_SHIFT, ARENA_SIZE, ARENA_TABLE_LEN, COMMIT_CHUNK, PAGES_PER_ARENA, PAGE_SHIFT,
};
use crate::os::{self, Why};
use crate::span::Span;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering::Relaxed};

/// Metadata of one arena (kept outside the arena, in its own mapping).
#[repr(C)]
pub struct Arena {
    /// First byte of the arena.
    pub base: usize,
    /// Bytes from `base` that are committed (read-write).
    pub committed: usize,
    /// The arena reserved before this one (a list for walks; page heap lock).
    pub older: *mut Arena,
    /// The span of every page (see the module invariants).
    pub pages: [AtomicPtr<Span>; PAGES_PER_ARENA],
}

/// A huge block: mapped directly from the OS, `len` bytes at `base`.
#[repr(C)]
pub struct Huge {
    /// Start of the mapping, which is also the user's pointer.
    pub base: usize,
    /// Bytes mapped.
    pub len: usize,
    /// Bytes the user asked for.
    pub requested: usize,
    /// Next huge block (the page heap's list of them, under its lock).
    pub next: *mut Huge,
}

static ARENAS: [AtomicPtr<Arena>; ARENA_TABLE_LEN] =
    [const { AtomicPtr::new(ptr::null_mut()) }; ARENA_TABLE_LEN];
static HUGES: [AtomicPtr<Huge>; ARENA_TABLE_LEN] =
    [const { AtomicPtr::new(ptr::null_mut()) }; ARENA_TABLE_LEN];

/// `addr >> ARENA_SHIFT`. On x86-64 the shift is opaque to the compiler, which would otherwise
/// turn `(addr >> 26) < 2^21` into a second shift of a copy (`addr >> 47 == 0`): `free`'s fast
/// path is one instruction shorter this way.
#[inline(always)]
fn arena_index(addr: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let i: usize;
        // SAFETY: a register shift; no memory, no stack.
        unsafe {
            core::arch::asm!("shr {i}, {s}", i = inlateout(reg) addr => i, s = const ARENA_SHIFT,
                options(pure, nomem, nostack));
        }
        i
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        addr >> ARENA_SHIFT
    }
}

/// The arena holding `addr`, or null.
#[inline(always)]
pub fn arena_of(addr: usize) -> *mut Arena {
    let i = arena_index(addr);
    if i < ARENA_TABLE_LEN {
        // SAFETY: bounds checked just above.
        unsafe { ARENAS.get_unchecked(i).load(Relaxed) }
    } else {
        ptr::null_mut()
    }
}

/// The page map entry of `addr` in arena `a` (null: no span there), or null if `a` is null.
#[inline(always)]
fn page_entry(a: *mut Arena, addr: usize) -> *mut Span {
    if a.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `a` is a live arena (arenas are never freed); the index is masked into range.
    unsafe {
        (*a).pages
            .get_unchecked((addr >> PAGE_SHIFT) & (PAGES_PER_ARENA - 1))
            .load(Relaxed)
    }
}

/// The span owning the page of `addr`, or null if `addr` is not in an in-use span's page or a free
/// span's boundary page.
#[inline(always)]
pub fn span_of(addr: usize) -> *mut Span {
    page_entry(arena_of(addr), addr)
}

/// Sets the page map entries of pages `[first, first + n)` (which lie in one arena) to `s`.
///
/// # Safety
/// The page heap lock is held, and the pages lie in one arena.
pub unsafe fn set_pages(first: usize, n: usize, s: *mut Span) {
    let a = arena_of(first);
    debug_assert!(!a.is_null());
    let i = (first >> PAGE_SHIFT) & (PAGES_PER_ARENA - 1);
    debug_assert!(i + n <= PAGES_PER_ARENA);
    for j in i..i + n {
        // SAFETY: `a` is live and `j < PAGES_PER_ARENA`.
        unsafe { (*a).pages.get_unchecked(j).store(s, Relaxed) };
    }
}

/// Reserves a new arena and registers it. Null if the OS refuses address space or metadata.
pub fn new_arena() -> *mut Arena {
    let base = os::reserve(ARENA_SIZE, ARENA_SIZE);
    if base.is_null() {
        return ptr::null_mut();
    }
    let meta = os::map(core::mem::size_of::<Arena>(), os::page_size(), Why::Meta) as *mut Arena;
    if meta.is_null() {
        os::unmap(base, ARENA_SIZE, Why::Trim);
        return ptr::null_mut();
    }
    // SAFETY: `meta` is a fresh zeroed mapping big enough for an `Arena`; all-zero is a valid
    // `Arena` (null page map), so only the scalar fields need setting.
    unsafe {
        (*meta).base = base as usize;
        (*meta).committed = 0;
    }
    let Some(slot) = ARENAS.get(base as usize >> ARENA_SHIFT) else {
        // An address above the 47-bit table (5-level paging): not usable as an arena.
        os::unmap(meta.cast(), core::mem::size_of::<Arena>(), Why::Trim);
        os::unmap(base, ARENA_SIZE, Why::Trim);
        return ptr::null_mut();
    };
    slot.store(meta, Relaxed);
    meta
}

/// Makes sure the first `bytes` of the arena are committed. `false` if the OS refuses.
///
/// # Safety
/// The page heap lock is held; `a` is a live arena; `bytes <= ARENA_SIZE`.
pub unsafe fn commit_prefix(a: *mut Arena, bytes: usize) -> bool {
    // SAFETY: the caller holds the lock that guards `committed`.
    let arena = unsafe { &mut *a };
    if bytes <= arena.committed {
        return true;
    }
    let target = bytes.div_ceil(COMMIT_CHUNK) * COMMIT_CHUNK;
    let target = target.min(ARENA_SIZE);
    // SAFETY: `[base + committed, base + target)` lies inside this arena's reservation.
    let ok = unsafe {
        os::commit(
            (arena.base + arena.committed) as *mut u8,
            target - arena.committed,
        )
    };
    if ok {
        arena.committed = target;
    }
    ok
}

/// The huge block record covering `addr`, or null.
pub fn huge_of(addr: usize) -> *mut Huge {
    let i = addr >> ARENA_SHIFT;
    if i < ARENA_TABLE_LEN {
        HUGES[i].load(Relaxed)
    } else {
        ptr::null_mut()
    }
}

/// Registers (or, with null, unregisters) the huge block `h` in every slot its mapping covers.
///
/// # Safety
/// The page heap lock is held; `[base, base+len)` is a huge mapping aligned to `ARENA_SIZE`.
pub unsafe fn set_huge(base: usize, len: usize, h: *mut Huge) {
    let first = base >> ARENA_SHIFT;
    let last = (base + len - 1) >> ARENA_SHIFT;
    for i in first..=last.min(ARENA_TABLE_LEN - 1) {
        HUGES[i].store(h, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PAGE_SIZE;

    #[test]
    fn every_page_of_a_registered_arena_maps_through_the_table() {
        let a = new_arena();
        assert!(!a.is_null());
        // SAFETY: a fresh arena; no page heap uses it, so this test owns its page map.
        let base = unsafe { (*a).base };
        assert_eq!(base % ARENA_SIZE, 0, "arenas are aligned to their size");
        assert_eq!(arena_of(base), a);
        assert_eq!(arena_of(base + ARENA_SIZE - 1), a);
        assert!(
            span_of(base + 5 * PAGE_SIZE).is_null(),
            "unmapped pages have no span"
        );
        let fake = 0x1000 as *mut Span;
        // SAFETY: the pages lie in this arena; the entry is only compared, never dereferenced.
        unsafe { set_pages(base + 5 * PAGE_SIZE, 3, fake) };
        assert_eq!(span_of(base + 5 * PAGE_SIZE), fake);
        assert_eq!(
            span_of(base + 8 * PAGE_SIZE - 1),
            fake,
            "last byte of the third page"
        );
        assert!(span_of(base + 8 * PAGE_SIZE).is_null());
        assert!(span_of(base + 5 * PAGE_SIZE - 1).is_null());
        // SAFETY: as above.
        unsafe { set_pages(base + 5 * PAGE_SIZE, 3, ptr::null_mut()) };
        // SAFETY: committing the first chunk of our own arena.
        assert!(unsafe { commit_prefix(a, 1) });
        // SAFETY: the arena is live.
        assert_eq!(unsafe { (*a).committed }, COMMIT_CHUNK);
    }

    #[test]
    fn addresses_outside_every_arena_map_to_nothing() {
        assert!(arena_of(0).is_null());
        assert!(span_of(0xdead_beef).is_null());
        assert!(span_of(usize::MAX).is_null(), "beyond the 47-bit table");
        assert!(huge_of(1 << 60).is_null());
    }
}
