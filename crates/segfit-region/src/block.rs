//! Boundary-tag blocks: the memory layout shared by every free-list allocator
//! (`FirstFit`, `NextFit`, `BestFit`, `SegregatedFit`). See the crate root for
//! the glossary.
//!
//! A region is a run of blocks ending in a sentinel:
//!
//! ```text
//! used block:  [header][payload ..................]
//! padded used: [header][pad...][slot][payload .....]   (over-aligned requests)
//! free block:  [header][next][prev] ....... [footer]
//! sentinel:    [header = 0][region start][previous sentinel | slack]
//! ```
//!
//! Each heap has a *granularity* `GRAIN` (`FreeSet::GRAIN`: one word for
//! the list allocators, two words — 16 bytes on 64-bit targets — for
//! `SegregatedFit`). Block sizes are multiples of it and every block starts
//! one word below a multiple of it, so every payload is `GRAIN`-aligned and
//! a request with `align <= GRAIN` never needs a lead. A region whose
//! usable length is not a whole number of grains keeps the rest (its
//! *slack*, less than `GRAIN`) after its sentinel, recorded in the low bits
//! of the sentinel's link word so that a claim continuing it still merges.
//!
//! The word in front of a payload (its *slot*) is normally the block header.
//! When an over-aligned payload needs fewer than `MIN_BLOCK` bytes of lead
//! (too few to split off as a free block), the lead stays inside the used
//! block as padding and the slot holds `pad | PADDED`, where `pad` is the
//! distance from the header to the slot. Real headers never carry `PADDED`.
//!
//! Invariants (checked by `Heap::check_invariants`):
//! * every block starts one word below a multiple of `GRAIN` and its size
//!   is a multiple of `GRAIN`, at least `MIN_BLOCK`;
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
/// Slot flag (never in a real header): the block starts `slot & !FLAGS`
/// bytes before this word, which is padding in front of an aligned payload.
pub(crate) const PADDED: usize = 4;
/// Mask of the flag bits in a header or slot.
pub(crate) const FLAGS: usize = FREE | PREV_FREE | PADDED;
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
/// header, in a heap whose block sizes are multiples of `grain` (a power of
/// two, at least `WORD`), or `None` if it would exceed `isize::MAX`.
/// Branch-free apart from the (never taken for a valid `Layout`) overflow
/// check.
#[inline(always)]
pub(crate) const fn block_size_for(size: usize, grain: usize) -> Option<usize> {
    if size > isize::MAX as usize - 2 * grain {
        return None;
    }
    // Round `size + WORD` up to a multiple of `grain`; at least MIN_BLOCK.
    let b = (size + WORD + grain - 1) & !(grain - 1);
    Some(if b < MIN_BLOCK { MIN_BLOCK } else { b })
}

/// The most lead [`lead_for`] can return for `align` in a heap whose
/// payloads all start `grain`-aligned: `align - grain`, 0 for alignments up
/// to `grain`.
#[inline(always)]
pub(crate) const fn max_lead(align: usize, grain: usize) -> usize {
    (if align > grain { align } else { grain }) - grain
}

/// How far into block `b` the header slot of an `align`-aligned payload lies
/// (0 when `b`'s own payload is aligned; at most `max_lead(align, grain)`
/// when `b + WORD` is `grain`-aligned).
/// A lead of at least `MIN_BLOCK` is split off as a free block; a smaller one
/// becomes padding (see the module docs). `None` on address overflow.
#[inline(always)]
pub(crate) fn lead_for(b: *mut u8, align: usize) -> Option<usize> {
    let mask = (align - 1) | (WORD - 1);
    let addr = b as usize;
    let payload = addr.checked_add(WORD)?.checked_add(mask)? & !mask;
    Some(payload - WORD - addr)
}

/// [`lead_for`] for a block known to fit the request (so the aligned
/// payload address cannot overflow): the distance from `b + WORD` up to the
/// next multiple of `max(align, WORD)`. Three instructions.
#[inline(always)]
pub(crate) fn lead_in(b: *mut u8, align: usize) -> usize {
    (b as usize).wrapping_add(WORD).wrapping_neg() & ((align - 1) | (WORD - 1))
}

/// Whether block `b` of `size` bytes can hold an aligned block of `need` bytes.
#[inline(always)]
pub(crate) fn fits(b: *mut u8, size: usize, need: usize, align: usize) -> bool {
    match lead_for(b, align) {
        Some(lead) => lead.checked_add(need).is_some_and(|end| end <= size),
        None => false,
    }
}

/// The block start and header of the live allocation whose payload is `p`
/// (resolving padding).
///
/// # Safety
/// `p` must be a live payload handed out by a boundary-tag heap.
#[inline(always)]
pub(crate) unsafe fn block_of(p: *mut u8) -> (*mut u8, usize) {
    // SAFETY: a live payload is preceded by its slot, and a padded slot
    // points back to the header of the same block.
    unsafe {
        let slot = p.sub(WORD);
        let h = header(slot);
        if h & PADDED == 0 {
            (slot, h)
        } else {
            let b = slot.sub(h & !FLAGS);
            (b, header(b))
        }
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
