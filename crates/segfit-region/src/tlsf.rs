//! Two-level segregated fit (TLSF) free index: the free set behind
//! `SegregatedFit`.
//!
//! A free block of size `s` lives in list `(fl, sl)`: `fl` is its power-of-two
//! range and `sl` one of `SL = 2^SL_BITS` equal slices of that range. Sizes
//! below `LINEAR` share `fl = 0`, with one exact `WORD`-wide class per `sl`.
//! Two bitmaps record which lists are non-empty, so finding a list whose every
//! block is large enough is two `trailing_zeros` — no loop.
//!
//! Invariants (checked by `Tlsf::check`):
//! * bit `fl` of `fl_bitmap` is set iff `sl_bitmap[fl] != 0`;
//! * bit `sl` of `sl_bitmap[fl]` is set iff list `(fl, sl)` is non-empty;
//! * every block in list `(fl, sl)` has `mapping(size) == (fl, sl)`;
//! * lists are doubly linked (`next` = word 1, `prev` = word 2), head `prev` null.

use core::ptr;

use crate::block::*;
use crate::heap::FreeSet;

/// log2 of the number of second-level slices per power of two.
pub(crate) const SL_BITS: u32 = 5;
/// Number of second-level lists per first-level range.
const SL: usize = 1 << SL_BITS;
const G: u32 = WORD.trailing_zeros();
/// Sizes below this use exact `WORD`-granular classes in `fl = 0`.
const LINEAR: usize = 1 << (SL_BITS + G);
/// Number of first-level ranges needed to cover every `usize`.
const FL: usize = (usize::BITS - (SL_BITS + G) + 1) as usize;

const NEXT: usize = 1;
const PREV: usize = 2;

/// The TLSF index.
pub(crate) struct Tlsf {
    fl_bitmap: usize,
    sl_bitmap: [u32; FL],
    heads: [[*mut u8; SL]; FL],
}

/// The list a free block of `size` bytes belongs to (`size >= MIN_BLOCK`).
#[inline(always)]
fn mapping(size: usize) -> (usize, usize) {
    if size < LINEAR {
        (0, size >> G)
    } else {
        let msb = usize::BITS - 1 - size.leading_zeros();
        let fl = msb - (SL_BITS + G) + 1;
        let sl = (size >> (msb - SL_BITS)) & (SL - 1);
        (fl as usize, sl)
    }
}

/// The smallest size whose whole list holds blocks of at least `size` bytes:
/// `size` rounded up to its list's upper boundary. For `size >= LINEAR`,
/// `search_size(size) - size < size / 2^SL_BITS`.
#[inline(always)]
pub(crate) fn search_size(size: usize) -> Option<usize> {
    if size < LINEAR {
        Some(size)
    } else {
        let msb = usize::BITS - 1 - size.leading_zeros();
        let round = (1usize << (msb - SL_BITS)) - 1;
        Some(size.checked_add(round)? & !round)
    }
}

impl Tlsf {
    /// First block of a non-empty list at or above `(fl, sl)`.
    #[inline(always)]
    fn first_at_or_above(&self, fl: usize, sl: usize) -> Option<*mut u8> {
        let sl_map = self.sl_bitmap[fl] & (u32::MAX << sl);
        let (fl, sl_map) = if sl_map != 0 {
            (fl, sl_map)
        } else {
            let fl_map = self.fl_bitmap & usize::MAX.checked_shl(fl as u32 + 1).unwrap_or(0);
            if fl_map == 0 {
                return None;
            }
            let fl = fl_map.trailing_zeros() as usize;
            (fl, self.sl_bitmap[fl])
        };
        let sl = sl_map.trailing_zeros() as usize;
        Some(self.heads[fl][sl])
    }

    /// Slow fallback, only taken when the O(1) search fails: scan the list of
    /// the request's own class for an exact fit. Keeps the heap usable to the
    /// last byte at the cost of one bounded-by-list-length walk before OOM.
    #[cold]
    fn scan_class(&self, need: usize, align: usize, steps: &mut u64) -> Option<*mut u8> {
        let (fl, sl) = mapping(need);
        let mut b = self.heads[fl][sl];
        while !b.is_null() {
            *steps += 1;
            // SAFETY: walking our own list nodes.
            unsafe {
                if fits(b, header(b) & !FLAGS, need, align) {
                    return Some(b);
                }
                b = ptr(b, NEXT);
            }
        }
        None
    }
}

// SAFETY: `find` only returns list nodes; the O(1) path returns blocks of at
// least `need + worst-case alignment lead`, the fallback checks `fits`.
unsafe impl FreeSet for Tlsf {
    const EMPTY: Self = Tlsf {
        fl_bitmap: 0,
        sl_bitmap: [0; FL],
        heads: [[ptr::null_mut(); SL]; FL],
    };

    #[inline(always)]
    fn find(&mut self, need: usize, align: usize, steps: &mut u64) -> Option<*mut u8> {
        let want = if align <= WORD {
            need
        } else {
            need.checked_add(MIN_BLOCK + align - WORD)?
        };
        let found = match search_size(want) {
            Some(s) if s <= isize::MAX as usize => {
                let (fl, sl) = mapping(s);
                self.first_at_or_above(fl, sl)
            }
            _ => None,
        };
        match found {
            Some(b) => {
                *steps += 1;
                Some(b)
            }
            None => self.scan_class(need, align, steps),
        }
    }

    #[inline(always)]
    unsafe fn insert(&mut self, b: *mut u8, size: usize) {
        let (fl, sl) = mapping(size);
        let head = self.heads[fl][sl];
        // SAFETY: `b` is a free block of ours; `head` a node or null.
        unsafe {
            set_ptr(b, NEXT, head);
            set_ptr(b, PREV, ptr::null_mut());
            if !head.is_null() {
                set_ptr(head, PREV, b);
            }
        }
        self.heads[fl][sl] = b;
        self.fl_bitmap |= 1 << fl;
        self.sl_bitmap[fl] |= 1 << sl;
    }

    #[inline(always)]
    unsafe fn remove(&mut self, b: *mut u8, size: usize) {
        let (fl, sl) = mapping(size);
        // SAFETY: `b` is a node of list (fl, sl); its links are nodes or null.
        unsafe {
            let (n, p) = (ptr(b, NEXT), ptr(b, PREV));
            if !n.is_null() {
                set_ptr(n, PREV, p);
            }
            if p.is_null() {
                self.heads[fl][sl] = n;
                if n.is_null() {
                    self.sl_bitmap[fl] &= !(1 << sl);
                    if self.sl_bitmap[fl] == 0 {
                        self.fl_bitmap &= !(1 << fl);
                    }
                }
            } else {
                set_ptr(p, NEXT, n);
            }
        }
    }

    #[inline(always)]
    unsafe fn replace(&mut self, old: *mut u8, old_size: usize, new: *mut u8, new_size: usize) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            let class = mapping(new_size);
            if mapping(old_size) != class {
                self.remove(old, old_size);
                self.insert(new, new_size);
                return;
            }
            if old == new {
                return; // same list, same node
            }
            // Same list: `new` takes `old`'s place; no bitmap changes. This
            // is the common case when splitting a large block.
            let (n, p) = (ptr(old, NEXT), ptr(old, PREV));
            set_ptr(new, NEXT, n);
            set_ptr(new, PREV, p);
            if p.is_null() {
                self.heads[class.0][class.1] = new;
            } else {
                set_ptr(p, NEXT, new);
            }
            if !n.is_null() {
                set_ptr(n, PREV, new);
            }
        }
    }

    fn largest(&self) -> usize {
        if self.fl_bitmap == 0 {
            return 0;
        }
        let fl = (usize::BITS - 1 - self.fl_bitmap.leading_zeros()) as usize;
        let sl = (u32::BITS - 1 - self.sl_bitmap[fl].leading_zeros()) as usize;
        let mut best = 0;
        let mut b = self.heads[fl][sl];
        while !b.is_null() {
            // SAFETY: walking our own list nodes.
            unsafe {
                best = best.max(header(b) & !FLAGS);
                b = ptr(b, NEXT);
            }
        }
        best
    }

    fn check(&self) -> Result<(usize, usize), &'static str> {
        let (mut n, mut bytes) = (0usize, 0usize);
        for fl in 0..FL {
            if (self.fl_bitmap >> fl & 1 != 0) != (self.sl_bitmap[fl] != 0) {
                return Err("first-level bitmap disagrees with second level");
            }
            for sl in 0..SL {
                let mut b = self.heads[fl][sl];
                if (self.sl_bitmap[fl] >> sl & 1 != 0) == b.is_null() {
                    return Err("second-level bitmap disagrees with list");
                }
                let mut prev: *mut u8 = ptr::null_mut();
                while !b.is_null() {
                    // SAFETY: walking our own list nodes.
                    unsafe {
                        let h = header(b);
                        if h & FREE == 0 {
                            return Err("used block in a TLSF list");
                        }
                        if mapping(h & !FLAGS) != (fl, sl) {
                            return Err("block filed in the wrong size class");
                        }
                        if ptr(b, PREV) != prev {
                            return Err("TLSF list prev link broken");
                        }
                        n += 1;
                        bytes += h & !FLAGS;
                        prev = b;
                        b = ptr(b, NEXT);
                    }
                }
            }
        }
        Ok((n, bytes))
    }
}
