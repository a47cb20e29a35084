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
/// Number of first-level ranges: a power of two (so indexes masked with
/// `FL - 1` need no bounds check) covering every `usize`.
const FL: usize = usize::BITS as usize;

const NEXT: usize = 1;
const PREV: usize = 2;

/// The TLSF index.
pub(crate) struct Tlsf {
    fl_bitmap: usize,
    sl_bitmap: [u32; FL],
    heads: [[*mut u8; SL]; FL],
    /// Where link writes to a null neighbour go, so list updates need no
    /// data-dependent branch. Never read.
    scratch: [*mut u8; 3],
}

/// Largest size the O(1) search handles; larger (absurd) requests go to the
/// cold path. Keeps every rounded size's first level below `FL`.
const MAX_SEARCH: usize = 1 << (usize::BITS - 2);

/// The list a free block of `size` bytes belongs to (`size >= MIN_BLOCK`).
///
/// Branch-free: with `t = size / WORD`, sizes below `LINEAR` (`t < SL`)
/// have `m = SL_BITS`, so `fl = 0` and `sl = t`; above, `m` is the top bit of
/// `t` and `sl` the `SL_BITS` bits below it.
#[inline(always)]
fn mapping(size: usize) -> (usize, usize) {
    let t = size >> G;
    let m = (usize::BITS - 1 - (t | SL).leading_zeros()) as usize;
    let fl = (m - SL_BITS as usize + (t >= SL) as usize) & (FL - 1);
    let sl = (t >> (m - SL_BITS as usize)) & (SL - 1);
    (fl, sl)
}

/// Whether blocks of `a` and `b` bytes belong to the same list: they agree
/// on every bit from `a`'s class width up (the width is `WORD` below
/// `LINEAR`, else `2^(msb(a) - SL_BITS)`). Branch-free.
#[inline(always)]
fn same_class(a: usize, b: usize) -> bool {
    let m = usize::BITS - 1 - (a | LINEAR).leading_zeros();
    let same = (a ^ b) < (1usize << (m - SL_BITS));
    debug_assert_eq!(same, mapping(a) == mapping(b));
    same
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
    /// First block of a non-empty list at or above `(fl, sl)`, and its list.
    /// One branch: whether `fl` itself has a large-enough list.
    #[inline(always)]
    fn first_at_or_above(&self, fl: usize, sl: usize) -> Option<(*mut u8, usize, usize)> {
        let fl = fl & (FL - 1);
        let sl_map = self.sl_bitmap[fl] & (u32::MAX << (sl & (SL - 1)));
        let (fl2, map) = if sl_map != 0 {
            (fl, sl_map)
        } else {
            // Candidate first levels above `fl` (`fl + 1 < FL` for every
            // rounded search size).
            let fl_map = self.fl_bitmap & (usize::MAX << 1 << fl);
            if fl_map == 0 {
                return None;
            }
            let fl2 = fl_map.trailing_zeros() as usize & (FL - 1);
            (fl2, self.sl_bitmap[fl2])
        };
        let sl2 = map.trailing_zeros() as usize & (SL - 1);
        Some((self.heads[fl2][sl2], fl2, sl2))
    }

    /// A pointer whose link words (`NEXT`, `PREV`) may be written when `b`
    /// is null: `b` itself, else the scratch words.
    #[inline(always)]
    fn or_scratch(&mut self, b: *mut u8) -> *mut u8 {
        let scratch = self.scratch.as_mut_ptr().cast::<u8>();
        if b.is_null() {
            scratch
        } else {
            b
        }
    }

    /// Unlinks the head `b` of list `(fl, sl)`.
    ///
    /// # Safety
    /// `b` must be the head of that list.
    #[inline(always)]
    unsafe fn pop(&mut self, b: *mut u8, fl: usize, sl: usize) {
        // (Masks: in range already; they let the compiler drop bounds checks.)
        let (fl, sl) = (fl & (FL - 1), sl & (SL - 1));
        // SAFETY: `b` is a node of ours; its `next` a node or null (then the
        // link write goes to scratch).
        unsafe {
            let n = ptr(b, NEXT);
            self.heads[fl][sl] = n;
            let dst = self.or_scratch(n);
            set_ptr(dst, PREV, ptr::null_mut());
            // Branch-free bitmap update: "did the list empty?" predicts badly.
            let empty = n.is_null() as u32;
            self.sl_bitmap[fl] &= !(empty << sl);
            let fl_empty = (self.sl_bitmap[fl] == 0) as usize;
            self.fl_bitmap &= !(fl_empty << fl);
        }
    }

    /// Slow fallback, only taken when the O(1) search fails: scan the lists
    /// of the request's own classes for a fit. Keeps the heap usable to the
    /// last byte at the cost of one bounded-by-list-length walk before OOM.
    #[cold]
    #[inline(never)]
    fn scan_class(
        &mut self,
        need: usize,
        align: usize,
        steps: &mut u64,
    ) -> Option<(*mut u8, (usize, usize))> {
        if need > MAX_SEARCH {
            return None;
        }
        let lo = mapping(need);
        let hi = mapping(need.saturating_add(max_lead(align)).min(MAX_SEARCH));
        let classes = [lo, hi];
        let n = if hi == lo { 1 } else { 2 };
        for &(fl, sl) in &classes[..n] {
            let mut b = self.heads[fl][sl];
            while !b.is_null() {
                *steps += 1;
                // SAFETY: walking our own list nodes.
                unsafe {
                    let size = header(b) & !FLAGS;
                    if fits(b, size, need, align) {
                        // Move it to the front, so `find` always returns a
                        // list head.
                        self.remove(b, size);
                        self.insert(b, size);
                        return Some((b, (fl, sl)));
                    }
                    b = ptr(b, NEXT);
                }
            }
        }
        None
    }
}

// SAFETY: `find` only returns list nodes; the O(1) path returns blocks of
// at least `need + max_lead(align)` bytes, the fallback checks `fits`.
unsafe impl FreeSet for Tlsf {
    const EMPTY: Self = Tlsf {
        fl_bitmap: 0,
        sl_bitmap: [0; FL],
        heads: [[ptr::null_mut(); SL]; FL],
        scratch: [ptr::null_mut(); 3],
    };

    type Found = (usize, usize);

    #[inline(always)]
    fn find(
        &mut self,
        need: usize,
        align: usize,
        steps: &mut u64,
    ) -> Option<(*mut u8, (usize, usize))> {
        // `need` is a multiple of WORD and, for a valid Layout,
        // `need + max_lead(align)` cannot overflow.
        let want = need.wrapping_add(max_lead(align));
        if want <= MAX_SEARCH {
            // Round up to a class boundary and map, with one bit scan:
            // `q` is the rounded size in units of the class width, in
            // `SL..=2 * SL` (or `< SL` in the linear range).
            let t = want >> G;
            let m = (usize::BITS - 1 - (t | SL).leading_zeros()) as usize;
            let shift = m - SL_BITS as usize;
            let q = (t + (1 << shift) - 1) >> shift;
            let fl = shift + (t >= SL) as usize + (q >> (SL_BITS + 1));
            if let Some((b, fl, sl)) = self.first_at_or_above(fl, q & (SL - 1)) {
                *steps += 1;
                return Some((b, (fl, sl)));
            }
        }
        self.scan_class(need, align, steps)
    }

    #[inline(always)]
    unsafe fn insert(&mut self, b: *mut u8, size: usize) {
        let (fl, sl) = mapping(size);
        let head = self.heads[fl][sl];
        // SAFETY: `b` is a free block of ours; `head` a node or null (then
        // the write goes to scratch).
        unsafe {
            set_ptr(b, NEXT, head);
            set_ptr(b, PREV, ptr::null_mut());
            let dst = self.or_scratch(head);
            set_ptr(dst, PREV, b);
        }
        self.heads[fl][sl] = b;
        self.fl_bitmap |= 1 << fl;
        self.sl_bitmap[fl] |= 1 << sl;
    }

    #[inline(always)]
    unsafe fn replace_found(
        &mut self,
        old: *mut u8,
        (fl, sl): (usize, usize),
        old_size: usize,
        new: *mut u8,
        new_size: usize,
    ) {
        // SAFETY: `old` is the head of list `(fl, sl)` (`find` returns
        // heads); its `next` is a node or null (then the write goes to
        // scratch).
        unsafe {
            if same_class(old_size, new_size) {
                // Splitting the head keeps it in its list: move the node.
                let n = ptr(old, NEXT);
                set_ptr(new, NEXT, n);
                set_ptr(new, PREV, ptr::null_mut());
                let dst = self.or_scratch(n);
                set_ptr(dst, PREV, new);
                self.heads[fl & (FL - 1)][sl & (SL - 1)] = new;
            } else {
                self.pop(old, fl, sl);
                self.insert(new, new_size);
            }
        }
    }

    #[inline(always)]
    unsafe fn remove_found(&mut self, b: *mut u8, (fl, sl): (usize, usize), _size: usize) {
        // SAFETY: `b` is the head of list `(fl, sl)`.
        unsafe { self.pop(b, fl, sl) }
    }

    #[inline(always)]
    unsafe fn remove(&mut self, b: *mut u8, size: usize) {
        // SAFETY: `b` is a node of list mapping(size); its links are nodes or
        // null (then the write goes to scratch).
        unsafe {
            let (n, p) = (ptr(b, NEXT), ptr(b, PREV));
            if p.is_null() {
                let (fl, sl) = mapping(size);
                self.pop(b, fl, sl);
                return;
            }
            set_ptr(p, NEXT, n);
            let dst = self.or_scratch(n);
            set_ptr(dst, PREV, p);
        }
    }

    #[inline(always)]
    unsafe fn replace(&mut self, old: *mut u8, old_size: usize, new: *mut u8, new_size: usize) {
        // No address order to keep: unlink and push (LIFO). Measured: a
        // same-class check here (to relink in place) costs more than it saves
        // on the free path.
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            self.remove(old, old_size);
            self.insert(new, new_size);
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
