//! Boundary-tag blocks: the memory layout shared by every free-list allocator
//! (`FirstFit`, `NextFit`, `BestFit`, `SegregatedFit`). See the crate root for
//! the glossary.
//!
//! A region is a run of blocks ending in a sentinel:
//!
//! ```text
//! used block:  [header][payload ..................]
//! free block:  [header][next][prev] ....... [footer]
//! sentinel:    [header = 0][region start][previous sentinel]
//! ```
//!
//! Invariants (checked by `Heap::check_invariants`):
//! * every block starts `WORD`-aligned and its size is a multiple of `WORD`,
//!   at least `MIN_BLOCK`;
//! * `header = size | FREE? | PREV_FREE?`; `PREV_FREE` is set exactly when the
//!   physically preceding block is free (never on the first block of a region);
//! * a free block's last word (its footer) holds its size, so the block after
//!   it can find its start in O(1);
//! * two free blocks are never physically adjacent (they are coalesced);
//! * the sentinel has size 0 and is never free.

use core::mem::size_of;

/// The machine word: block granularity and the header size.
pub(crate) const WORD: usize = size_of::<usize>();
/// Header flag: this block is free.
pub(crate) const FREE: usize = 1;
/// Header flag: the physically preceding block is free (its footer is valid).
pub(crate) const PREV_FREE: usize = 2;
/// Mask of the flag bits in a header.
pub(crate) const FLAGS: usize = FREE | PREV_FREE;
/// Smallest block: header, two links and a footer.
pub(crate) const MIN_BLOCK: usize = 4 * WORD;
/// Bytes taken by the end-of-region sentinel.
pub(crate) const SENTINEL: usize = 3 * WORD;

/// Reads the header word of block `b`.
///
/// # Safety
/// `b` must be a `WORD`-aligned block (or sentinel) inside a claimed region.
#[inline(always)]
pub(crate) unsafe fn header(b: *mut u8) -> usize {
    // SAFETY: the caller guarantees `b` is an aligned block start in our memory.
    unsafe { b.cast::<usize>().read() }
}

/// Writes the header word of block `b`.
///
/// # Safety
/// As for [`header`], and the caller must own the memory at `b`.
#[inline(always)]
pub(crate) unsafe fn set_header(b: *mut u8, value: usize) {
    // SAFETY: the caller guarantees `b` is an aligned, writable block start.
    unsafe { b.cast::<usize>().write(value) }
}

/// Reads word `i` of block `b` (word 0 is the header).
///
/// # Safety
/// `b + i * WORD` must be an aligned word inside a claimed region.
#[inline(always)]
pub(crate) unsafe fn word(b: *mut u8, i: usize) -> usize {
    // SAFETY: the caller guarantees the word lies in our memory and is aligned.
    unsafe { b.cast::<usize>().add(i).read() }
}

/// Writes word `i` of block `b`.
///
/// # Safety
/// As for [`word`], and the memory must be writable by us.
#[inline(always)]
pub(crate) unsafe fn set_word(b: *mut u8, i: usize, value: usize) {
    // SAFETY: the caller guarantees the word lies in our memory and is aligned.
    unsafe { b.cast::<usize>().add(i).write(value) }
}

/// Reads a pointer stored in word `i` of block `b`.
///
/// # Safety
/// As for [`word`]; the word must hold a pointer written by [`set_ptr`].
#[inline(always)]
pub(crate) unsafe fn ptr(b: *mut u8, i: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the word lies in our memory and is aligned.
    unsafe { b.cast::<*mut u8>().add(i).read() }
}

/// Stores a pointer in word `i` of block `b`.
///
/// # Safety
/// As for [`set_word`].
#[inline(always)]
pub(crate) unsafe fn set_ptr(b: *mut u8, i: usize, p: *mut u8) {
    // SAFETY: the caller guarantees the word lies in our memory and is aligned.
    unsafe { b.cast::<*mut u8>().add(i).write(p) }
}

/// Marks `b` (of `size` bytes) free: header with `FREE` and a footer.
/// The caller handles the successor's `PREV_FREE` bit.
///
/// # Safety
/// `b..b + size` must be a block we own, `size >= MIN_BLOCK`.
#[inline(always)]
pub(crate) unsafe fn make_free(b: *mut u8, size: usize) {
    // SAFETY: `b..b+size` is ours and large enough for a header and footer.
    unsafe {
        set_header(b, size | FREE);
        b.add(size - WORD).cast::<usize>().write(size);
    }
}

/// The block size that holds a payload of `size` bytes right after the
/// header, or `None` if it overflows `isize`.
#[inline(always)]
pub(crate) const fn block_size_for(size: usize) -> Option<usize> {
    // Round `size + WORD` up to a multiple of WORD, with checked arithmetic.
    let with_header = match size.checked_add(2 * WORD - 1) {
        Some(v) => v & !(WORD - 1),
        None => return None,
    };
    if with_header > isize::MAX as usize {
        return None;
    }
    if with_header < MIN_BLOCK {
        Some(MIN_BLOCK)
    } else {
        Some(with_header)
    }
}

/// How far into block `b` the header of an aligned block must start so that its
/// payload is `align`-aligned and the skipped prefix is either empty or a
/// valid free block (`>= MIN_BLOCK`). `None` on address overflow.
#[inline(always)]
pub(crate) fn lead_for(b: *mut u8, align: usize) -> Option<usize> {
    let addr = b as usize;
    if align <= WORD {
        return Some(0);
    }
    let mask = align - 1;
    let payload = addr.checked_add(WORD)?.checked_add(mask)? & !mask;
    let mut lead = payload - WORD - addr;
    if lead != 0 && lead < MIN_BLOCK {
        let payload = addr.checked_add(WORD + MIN_BLOCK)?.checked_add(mask)? & !mask;
        lead = payload - WORD - addr;
    }
    Some(lead)
}

/// Whether block `b` of `size` bytes can hold an aligned block of `need` bytes.
#[inline(always)]
pub(crate) fn fits(b: *mut u8, size: usize, need: usize, align: usize) -> bool {
    match lead_for(b, align) {
        Some(lead) => lead.checked_add(need).is_some_and(|end| end <= size),
        None => false,
    }
}

/// Rounds `addr` up to a multiple of the power of two `align`.
#[inline(always)]
pub(crate) const fn align_up(addr: usize, align: usize) -> Option<usize> {
    match addr.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}
