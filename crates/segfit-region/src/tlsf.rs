//! Two-level segregated fit (TLSF) free index: the free set behind
//! `SegregatedFit`.
//!
//! A free block of size `s` lives in list `(fl, sl)`: `fl` is its power-of-two
//! range and `sl` one of `SL = 2^SL_BITS` equal slices of that range. Block
//! sizes are multiples of `GRAIN` (two words), so sizes below `LINEAR`
//! (512 B on 64-bit targets) share `fl = 0`, with one exact `GRAIN`-wide
//! class per `sl`. Two bitmaps record which lists are non-empty, so finding
//! a list whose every block is large enough is two `trailing_zeros`. A
//! first-level bit is cleared lazily: the hot paths only keep the
//! second-level bits exact, and the search clears (and skips) a first-level
//! bit whose level turns out to be empty — each stale bit costs one extra
//! iteration, once.
//!
//! Lists are doubly linked through words 1 (`next`) and 2 (`prev`) of each
//! free block. A head's `prev` word holds a *tag* naming its list
//! (`2 * (fl * SL + sl) + 1`; odd, so never a node address), so unlinking
//! any node — the free path's neighbour merges — needs neither the node's
//! size class nor a branch on "is it a head?": the word that points at the
//! node is the head slot named by the tag or the previous node's `next`,
//! chosen with a conditional move, and the second-level bit is cleared
//! branch-free when the list empties. The tag cannot be a pointer to the
//! head slot (as talc's `next_of_prev` is) because the allocator may be
//! moved after `claim`; an index stays valid wherever the `Tlsf` lives.
//!
//! Invariants (checked by `Tlsf::check`):
//! * bit `fl` of `fl_bitmap` is set if `sl_bitmap[fl] != 0` (it may stay
//!   set after the level empties: the search clears such stale bits);
//! * bit `sl` of `sl_bitmap[fl]` is set iff list `(fl, sl)` is non-empty;
//! * every block in list `(fl, sl)` has `mapping(size) == fl * SL + sl`;
//! * each node's `prev` is the node before it, the head's is
//!   `tag(fl * SL + sl)`.

use core::ptr;

use crate::block::*;
use crate::heap::{FreeSet, Tally};

/// log2 of the number of second-level slices per power of two.
pub(crate) const SL_BITS: u32 = 5;
/// Number of second-level lists per first-level range.
const SL: usize = 1 << SL_BITS;
/// Block granularity: two words (16 bytes on 64-bit targets), so every
/// payload is 16-byte aligned and the common `align <= 16` requests never
/// need padding or a split-off lead.
const GRAIN: usize = 2 * WORD;
const G: u32 = GRAIN.trailing_zeros();
/// Sizes below this use exact `GRAIN`-wide classes in `fl = 0` (block sizes
/// are multiples of `GRAIN`, so each such class holds one size).
const LINEAR: usize = 1 << (SL_BITS + G);
/// Number of first-level ranges: a power of two (so indexes masked with
/// `FL - 1` need no bounds check) covering every `usize`.
const FL: usize = usize::BITS as usize;

const NEXT: usize = 1;
/// A node's `prev` word: the previous node, or for a list head
/// `tag(class)`, which has bit 0 set (nodes are word-aligned, so a real
/// pointer never has). The tag lets `remove` update the head slot and the
/// bitmaps without recomputing the class from the size.
const PREV: usize = 2;
/// Number of lists (`heads` is indexed by `fl * SL + sl`).
const LISTS: usize = FL * SL;

/// The `prev` word of the head of list `idx`.
#[inline(always)]
const fn tag(idx: usize) -> usize {
    (idx << 1) | 1
}

/// The TLSF index.
pub(crate) struct Tlsf {
    fl_bitmap: usize,
    sl_bitmap: [u32; FL],
    /// List heads, indexed by `fl * SL + sl`.
    heads: [*mut u8; LISTS],
    /// Where link writes to a null neighbour go, so list updates need no
    /// data-dependent branch. Never read.
    scratch: [*mut u8; 3],
}

/// Largest size the O(1) search handles; larger (absurd) requests go to the
/// cold path. Keeps every rounded size's first level below `FL`.
const MAX_SEARCH: usize = 1 << (usize::BITS - 2);

/// The list a free block of `size` bytes belongs to (`size >= MIN_BLOCK`),
/// as `fl * SL + sl`.
///
/// Branch-free: with `t = size / GRAIN` and `m` the top bit of `t | SL`,
/// `shift = m - SL_BITS` is the class width (as a power of two, in grains)
/// and `t >> shift` lies in `SL..2 * SL` (its top bit adds the one that
/// `fl = shift + 1` needs) — except in the linear range (`t < SL`), where
/// `shift = 0` and `t` is the exact class in `fl = 0`.
#[inline(always)]
fn mapping(size: usize) -> usize {
    let t = size >> G;
    let shift = (usize::BITS - 1 - SL_BITS - (t | SL).leading_zeros()) as usize;
    let idx = (shift << SL_BITS) + (t >> shift);
    debug_assert_eq!(idx, {
        let m = (usize::BITS - 1 - (t | SL).leading_zeros()) as usize;
        let fl = m - SL_BITS as usize + (t >= SL) as usize;
        fl * SL + ((t >> (m - SL_BITS as usize)) & (SL - 1))
    });
    idx
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
    /// One branch: whether `fl` itself has a large-enough list (if not, the
    /// next non-empty level, skipping stale first-level bits).
    #[inline(always)]
    fn first_at_or_above(&mut self, fl: usize, sl: usize) -> Option<(*mut u8, usize)> {
        let fl = fl & (FL - 1);
        let sl_map = self.sl_bitmap[fl] & (u32::MAX << (sl & (SL - 1)));
        let (fl2, map) = if sl_map != 0 {
            (fl, sl_map)
        } else {
            self.first_level_above(fl)?
        };
        let idx = fl2 * SL + (map.trailing_zeros() as usize & (SL - 1));
        Some((self.heads[idx], idx))
    }

    /// The lowest first level above `fl` with a non-empty list, and its
    /// second-level bitmap. First-level bits are cleared lazily, here: a
    /// set bit whose level has emptied since is cleared and skipped.
    #[inline(always)]
    fn first_level_above(&mut self, fl: usize) -> Option<(usize, u32)> {
        // Candidate first levels above `fl` (`fl + 1 < FL` for every
        // rounded search size).
        let mut fl_map = self.fl_bitmap & (usize::MAX << 1 << fl);
        loop {
            if fl_map == 0 {
                return None;
            }
            let fl2 = fl_map.trailing_zeros() as usize & (FL - 1);
            let map = self.sl_bitmap[fl2];
            if map != 0 {
                return Some((fl2, map));
            }
            self.fl_bitmap &= !(1 << fl2);
            fl_map &= fl_map - 1;
        }
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

    /// Sets list `idx`'s head to `n` (null or a node whose `prev` already
    /// holds `tag(idx)`), clearing its second-level bit if the list is now
    /// empty (the first-level bit is cleared lazily by the search).
    /// Branch-free: "did the list empty?" predicts badly.
    #[inline(always)]
    fn set_head(&mut self, idx: usize, n: *mut u8) {
        let idx = idx & (LISTS - 1);
        let (fl, sl) = (idx / SL, idx % SL);
        self.heads[idx] = n;
        let empty = n.is_null() as u32;
        self.sl_bitmap[fl] &= !(empty << sl);
    }

    /// Unlinks the head `b` of list `idx`.
    ///
    /// # Safety
    /// `b` must be the head of that list.
    #[inline(always)]
    unsafe fn pop(&mut self, b: *mut u8, idx: usize) {
        // SAFETY: `b` is a node of ours; its `next` a node or null (then the
        // link write goes to scratch).
        unsafe {
            let n = ptr(b, NEXT);
            let dst = self.or_scratch(n);
            set_word(dst, PREV, tag(idx));
            self.set_head(idx, n);
        }
    }

    /// The other-class case of `replace_found`: pops the head `old` of list
    /// `idx`, inserts `new` and returns `old`. Out of line (and called in
    /// tail position): it needs more registers than the rest of
    /// `allocate`, which would otherwise save and restore them on every
    /// call.
    ///
    /// # Safety
    /// `old` must be the head of list `idx`; `new` a free block of
    /// `new_size` bytes, not in the set.
    #[inline(never)]
    unsafe fn pop_and_insert(
        &mut self,
        old: *mut u8,
        idx: usize,
        new: *mut u8,
        new_size: usize,
    ) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe {
            self.pop(old, idx);
            self.insert(new, new_size);
        }
        old
    }

    /// The O(1) bitmap search (`None` if no list is certain to fit).
    #[inline(always)]
    fn find_fast(&mut self, need: usize, align: usize) -> Option<(*mut u8, usize)> {
        // `need` is a multiple of GRAIN and, for a valid Layout,
        // `need + max_lead(align, GRAIN)` cannot overflow.
        let want = need.wrapping_add(max_lead(align, GRAIN));
        if want > MAX_SEARCH {
            return None;
        }
        // Round up to a class boundary and map, with one bit scan: as in
        // `mapping`, but `q` is `t` divided by the class width rounded up,
        // in `SL..=2 * SL` (or `t < SL` in the linear range); `q = 2 * SL`
        // lands on `sl = 0` of the next level.
        let t = want >> G;
        let shift = (usize::BITS - 1 - SL_BITS - (t | SL).leading_zeros()) as usize;
        let q = (t + (1 << shift) - 1) >> shift;
        let idx = (shift << SL_BITS) + q;
        self.first_at_or_above(idx / SL, idx % SL)
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
    ) -> Option<(*mut u8, usize)> {
        if need > MAX_SEARCH {
            return None;
        }
        let lo = mapping(need);
        let hi = mapping(need.saturating_add(max_lead(align, GRAIN)).min(MAX_SEARCH));
        let classes = [lo, hi];
        let n = if hi == lo { 1 } else { 2 };
        for &idx in &classes[..n] {
            let mut b = self.heads[idx];
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
                        return Some((b, idx));
                    }
                    b = ptr(b, NEXT);
                }
            }
        }
        None
    }
}

// SAFETY: `find` only returns list nodes; the O(1) path returns blocks of
// at least `need + max_lead(align, GRAIN)` bytes, the fallback checks `fits`.
unsafe impl FreeSet for Tlsf {
    const EMPTY: Self = Tlsf {
        fl_bitmap: 0,
        sl_bitmap: [0; FL],
        heads: [ptr::null_mut(); LISTS],
        scratch: [ptr::null_mut(); 3],
    };

    const LIFO: bool = true;

    const GRAIN: usize = GRAIN;

    /// The list index `fl * SL + sl` of the head returned.
    type Found = usize;

    #[inline(always)]
    fn find(&mut self, need: usize, align: usize, steps: &mut u64) -> Option<(*mut u8, usize)> {
        if let Some(found) = self.find_fast(need, align) {
            *steps += 1;
            return Some(found);
        }
        self.scan_class(need, align, steps)
    }

    #[inline(always)]
    fn find_quick(&mut self, need: usize, steps: &mut u64) -> Option<(*mut u8, usize)> {
        let found = self.find_fast(need, GRAIN)?;
        *steps += 1;
        Some(found)
    }

    #[inline(always)]
    fn find_rest(
        &mut self,
        need: usize,
        align: usize,
        steps: &mut u64,
    ) -> Option<(*mut u8, usize)> {
        self.scan_class(need, align, steps)
    }

    #[inline(always)]
    unsafe fn insert(&mut self, b: *mut u8, size: usize) {
        // (Mask: in range already; it lets the compiler drop a bounds check.)
        let idx = mapping(size) & (LISTS - 1);
        let head = self.heads[idx];
        // SAFETY: `b` is a free block of ours; `head` a node or null (then
        // the write goes to scratch).
        unsafe {
            set_ptr(b, NEXT, head);
            set_word(b, PREV, tag(idx));
            let dst = self.or_scratch(head);
            set_ptr(dst, PREV, b);
        }
        self.heads[idx] = b;
        self.fl_bitmap |= 1 << (idx / SL);
        self.sl_bitmap[idx / SL] |= 1 << (idx % SL);
    }

    #[inline(always)]
    unsafe fn replace_found(
        &mut self,
        old: *mut u8,
        idx: usize,
        old_size: usize,
        new: *mut u8,
        new_size: usize,
    ) -> *mut u8 {
        // SAFETY: `old` is the head of list `idx` (`find` returns heads);
        // its `next` is a node or null (then the write goes to scratch).
        unsafe {
            if same_class(old_size, new_size) {
                // Splitting the head keeps it in its list: move the node.
                let n = ptr(old, NEXT);
                set_ptr(new, NEXT, n);
                set_word(new, PREV, tag(idx));
                let dst = self.or_scratch(n);
                set_ptr(dst, PREV, new);
                self.heads[idx & (LISTS - 1)] = new;
                old
            } else {
                self.pop_and_insert(old, idx, new, new_size)
            }
        }
    }

    #[inline(always)]
    unsafe fn remove_found(&mut self, b: *mut u8, idx: usize, _size: usize) {
        // SAFETY: `b` is the head of list `idx`.
        unsafe { self.pop(b, idx) }
    }

    #[inline(always)]
    unsafe fn remove(&mut self, b: *mut u8, _size: usize) {
        // SAFETY: `b` is a node; its `next` is a node or null (then the
        // write goes to scratch), its `prev` a node or a head tag.
        unsafe {
            let (n, p) = (ptr(b, NEXT), word(b, PREV));
            // `n` takes over `b`'s `prev`: the previous node, or (if `b` was
            // the head) the head tag.
            let dst = self.or_scratch(n);
            set_word(dst, PREV, p);
            // Branch-free ("was it a head?" predicts badly): the word that
            // points at `b` is the head slot or the previous node's `next`.
            let is_head = p & 1 != 0;
            let idx = (p >> 1) & (LISTS - 1);
            let head_slot = self.heads.as_mut_ptr().add(idx).cast::<u8>();
            let slot = if is_head {
                head_slot
            } else {
                (p as *mut u8).add(NEXT * WORD)
            };
            slot.cast::<*mut u8>().write(n);
            // Clear the second-level bit if `b` was alone in its list (the
            // first-level bit is cleared lazily by the search). When it was
            // not a head, `idx` is meaningless but `empty` is 0.
            let empty = (is_head & n.is_null()) as u32;
            let (fl, sl) = (idx / SL, idx % SL);
            self.sl_bitmap[fl] &= !(empty << sl);
        }
    }

    #[inline(always)]
    unsafe fn replace(&mut self, old: *mut u8, old_size: usize, new: *mut u8, new_size: usize) {
        // No address order to keep: unlink and push (LIFO).
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            self.remove(old, old_size);
            self.insert(new, new_size);
        }
    }

    fn tally(&self) -> Tally {
        let mut t = Tally::default();
        // Only the non-empty lists, found through the bitmaps.
        let mut fls = self.fl_bitmap;
        while fls != 0 {
            let fl = fls.trailing_zeros() as usize;
            fls &= fls - 1;
            let mut sls = self.sl_bitmap[fl];
            while sls != 0 {
                let sl = sls.trailing_zeros() as usize;
                sls &= sls - 1;
                let mut b = self.heads[fl * SL + sl];
                while !b.is_null() {
                    // SAFETY: walking our own list nodes.
                    unsafe {
                        t.add(header(b) & !FLAGS);
                        b = ptr(b, NEXT);
                    }
                }
            }
        }
        t
    }

    fn check(&self) -> Result<(usize, usize), &'static str> {
        let (mut n, mut bytes) = (0usize, 0usize);
        for fl in 0..FL {
            if self.fl_bitmap >> fl & 1 == 0 && self.sl_bitmap[fl] != 0 {
                return Err("first-level bit clear for a non-empty level");
            }
            for sl in 0..SL {
                let idx = fl * SL + sl;
                let mut b = self.heads[idx];
                if (self.sl_bitmap[fl] >> sl & 1 != 0) == b.is_null() {
                    return Err("second-level bitmap disagrees with list");
                }
                let mut prev = tag(idx);
                while !b.is_null() {
                    // SAFETY: walking our own list nodes.
                    unsafe {
                        let h = header(b);
                        if h & FREE == 0 {
                            return Err("used block in a TLSF list");
                        }
                        if mapping(h & !FLAGS) != idx {
                            return Err("block filed in the wrong size class");
                        }
                        if word(b, PREV) != prev {
                            return Err("TLSF list prev link (or head tag) broken");
                        }
                        n += 1;
                        bytes += h & !FLAGS;
                        prev = b as usize;
                        b = ptr(b, NEXT);
                    }
                }
            }
        }
        Ok((n, bytes))
    }
}
