//! The boundary-tag heap core shared by the four free-list allocators.
//!
//! `Heap<S>` owns the block layout (see `block.rs`): claiming regions,
//! splitting, coalescing, in-place reallocation, statistics and the invariant
//! walk. *Which* free block an allocation gets is decided by the free set `S`
//! (`list::List<P>` for first/next/best-fit, `tlsf::Tlsf` for segregated-fit).
//!
//! Invariants, besides those of `block.rs`:
//! * the free set holds exactly the blocks whose header has `FREE`;
//! * used + free blocks + `SENTINEL * regions` cover `claimed` exactly.
//!
//! The heap keeps no per-call byte or block counters (they cost the hot
//! paths a read-modify-write each): `stats` walks the free set instead, in
//! O(free blocks), and derives the bytes in use from `claimed`.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use crate::block::*;
use crate::{ClaimError, RegionStats};

/// The structure that indexes free blocks. Implemented by the address-ordered
/// list and by the TLSF bitmap index.
///
/// Every method takes block sizes explicitly so implementations never depend
/// on the order in which `Heap` rewrites headers.
///
/// # Safety
/// Implementations must only return blocks they were given, and `find` must
/// return a block that [`fits`] the request.
pub(crate) unsafe trait FreeSet {
    /// The empty set (usable in `const fn new`).
    const EMPTY: Self;
    /// The set keeps no order, so `deallocate` may unlink the free
    /// neighbours and insert the merged block afresh (TLSF) instead of
    /// replacing a neighbour in place to keep its list position (the
    /// address-ordered lists).
    const LIFO: bool = false;
    /// Block granularity: every block size is a multiple of `GRAIN` (a power
    /// of two, at least `WORD`, dividing `MIN_BLOCK`) and every block starts
    /// `WORD` bytes before a `GRAIN`-aligned address, so every payload is
    /// `GRAIN`-aligned and requests with `align <= GRAIN` never need a lead.
    const GRAIN: usize = WORD;
    /// What `find` knows about the block it returns that makes the
    /// `*_found` updates cheaper (TLSF: its list, of which it is the head).
    type Found: Copy;
    /// A free block that can hold `need` bytes with an `align`-aligned payload
    /// (it stays in the set). Adds one to `steps` per free block examined.
    fn find(
        &mut self,
        need: usize,
        align: usize,
        steps: &mut u64,
    ) -> Option<(*mut u8, Self::Found)>;
    /// [`FreeSet::find`] for `align <= GRAIN` (any block's payload is
    /// aligned), or its quick part: when this returns `None`, `allocate`
    /// (out of line) asks [`FreeSet::find_rest`] before giving up.
    #[inline(always)]
    fn find_quick(&mut self, need: usize, steps: &mut u64) -> Option<(*mut u8, Self::Found)> {
        self.find(need, Self::GRAIN, steps)
    }
    /// What [`FreeSet::find`] would still try after
    /// [`FreeSet::find_quick`]`(need)` returned `None` (nothing by default:
    /// `find_quick` is the whole search).
    fn find_rest(
        &mut self,
        need: usize,
        align: usize,
        steps: &mut u64,
    ) -> Option<(*mut u8, Self::Found)> {
        let _ = (need, align, steps);
        None
    }
    /// Adds the free block `b` of `size` bytes.
    ///
    /// # Safety
    /// `b` must be a free block of `size` bytes not already in the set.
    unsafe fn insert(&mut self, b: *mut u8, size: usize);
    /// Adds `b`, which lies right after the free block `anchor` in address
    /// order with no free block between them.
    ///
    /// # Safety
    /// As for `insert`; `anchor` must be in the set.
    unsafe fn insert_after(&mut self, anchor: *mut u8, b: *mut u8, size: usize) {
        let _ = anchor;
        // SAFETY: forwarded from the caller.
        unsafe { self.insert(b, size) }
    }
    /// [`FreeSet::replace`] for the block `find` just returned (which
    /// may be cheaper: TLSF knows it is a list head). Returns `old`, so the
    /// caller need not keep it live across an out-of-line call (which
    /// would cost `allocate` register saves on every call).
    ///
    /// # Safety
    /// As for `replace`; `old` and `found` must be what `find` just returned.
    #[inline(always)]
    unsafe fn replace_found(
        &mut self,
        old: *mut u8,
        found: Self::Found,
        old_size: usize,
        new: *mut u8,
        new_size: usize,
    ) -> *mut u8 {
        let _ = found;
        // SAFETY: forwarded from the caller.
        unsafe { self.replace(old, old_size, new, new_size) };
        old
    }
    /// [`FreeSet::remove`] for the block `find` just returned.
    ///
    /// # Safety
    /// As for `remove`; `b` and `found` must be what `find` just returned.
    #[inline(always)]
    unsafe fn remove_found(&mut self, b: *mut u8, found: Self::Found, size: usize) {
        let _ = found;
        // SAFETY: forwarded from the caller.
        unsafe { self.remove(b, size) }
    }
    /// Removes `b` (of `size` bytes) from the set.
    ///
    /// # Safety
    /// `b` must be in the set with that size.
    unsafe fn remove(&mut self, b: *mut u8, size: usize);
    /// Replaces `old` with `new`, whose extent overlaps `old`'s and no other
    /// free block (so address order is kept).
    ///
    /// # Safety
    /// `old` must be in the set with `old_size`; `new` a free block of `new_size`.
    unsafe fn replace(&mut self, old: *mut u8, old_size: usize, new: *mut u8, new_size: usize) {
        // SAFETY: forwarded from the caller.
        unsafe {
            self.remove(old, old_size);
            self.insert(new, new_size);
        }
    }
    /// Walks the set: number, bytes and largest size of its blocks.
    fn tally(&self) -> Tally;
    /// Checks the set's own structure; returns (blocks, bytes) it holds.
    fn check(&self) -> Result<(usize, usize), &'static str>;
}

/// Sentinel `s`'s link to the previous region's sentinel (null for the
/// first region), and the `slack`: the bytes its region has after the
/// sentinel, fewer than `GRAIN`, kept in the link's low bits (as words).
///
/// # Safety
/// `s` must be a sentinel written by `claim`.
#[inline]
unsafe fn sentinel_link(s: *mut u8) -> (*mut u8, usize) {
    // SAFETY: a sentinel's third word is its link.
    let link = unsafe { ptr(s, 2) };
    let tag = link as usize & (WORD - 1);
    (link.wrapping_sub(tag), tag * WORD)
}

/// What [`FreeSet::tally`] counts.
#[derive(Clone, Copy, Default)]
pub(crate) struct Tally {
    pub(crate) blocks: usize,
    pub(crate) bytes: usize,
    pub(crate) largest: usize,
}

impl Tally {
    /// Counts one free block of `size` bytes.
    pub(crate) fn add(&mut self, size: usize) {
        self.blocks += 1;
        self.bytes += size;
        self.largest = self.largest.max(size);
    }
}

/// The generic boundary-tag heap.
pub(crate) struct Heap<S> {
    pub(crate) set: S,
    /// Sentinel of the most recently claimed region (head of the region chain).
    last: *mut u8,
    claimed: usize,
    regions: usize,
    steps: u64,
}

impl<S: FreeSet> Heap<S> {
    pub(crate) const fn new() -> Self {
        Heap {
            set: S::EMPTY,
            last: ptr::null_mut(),
            claimed: 0,
            regions: 0,
            steps: 0,
        }
    }

    /// # Safety
    /// See [`crate::RegionAlloc::claim`].
    pub(crate) unsafe fn claim(&mut self, base: *mut u8, len: usize) -> Result<(), ClaimError> {
        let lo = base as usize;
        let hi = lo.checked_add(len).ok_or(ClaimError::AddressOverflow)?;
        let start = align_up(lo, WORD).ok_or(ClaimError::AddressOverflow)?;
        let end = hi & !(WORD - 1);
        if end < start || end - start < MIN_BLOCK + SENTINEL {
            return Err(ClaimError::TooSmall);
        }
        // Reject overlaps with any region we already manage.
        let mut s = self.last;
        while !s.is_null() {
            // SAFETY: `s` walks the sentinel chain we wrote in earlier claims.
            let (r_start, (prev, slack)) = unsafe { (word(s, 1), sentinel_link(s)) };
            let r_end = s as usize + SENTINEL + slack;
            if start < r_end && r_start < end {
                return Err(ClaimError::Overlap);
            }
            s = prev;
        }
        // A range that starts where the last region ends continues it.
        // SAFETY: `self.last`, if not null, is our latest sentinel.
        let merge = !self.last.is_null()
            && unsafe { self.last as usize + SENTINEL + sentinel_link(self.last).1 } == start;
        // The first block: the old sentinel when merging, else the first
        // address `WORD` below a `GRAIN` boundary (at most `GRAIN - WORD`
        // bytes in, so `first + MIN_BLOCK + SENTINEL <= end` still holds
        // unless the range is only just long enough; checked below).
        let first = if merge {
            self.last as usize
        } else {
            ((start + WORD + S::GRAIN - 1) & !(S::GRAIN - 1)) - WORD
        };
        // The sentinel follows the last whole `GRAIN` multiple of blocks;
        // the `slack` after it (less than `GRAIN`) stays unused, but is
        // recorded so that a claim continuing this one still merges.
        let blocks = (end - SENTINEL).saturating_sub(first) & !(S::GRAIN - 1);
        if blocks < MIN_BLOCK {
            return Err(ClaimError::TooSmall);
        }
        let sentinel_at = first + blocks;
        let slack = end - SENTINEL - sentinel_at;
        // SAFETY: `lo <= first` (when not merging) and
        // `sentinel_at + SENTINEL <= end <= lo + len`: the sentinel lies
        // inside the caller's range.
        let sentinel = unsafe { base.add(sentinel_at - lo) };
        // SAFETY: the caller handed us `start..end`; all writes stay inside it
        // or in our own previous sentinel (when merging).
        unsafe {
            let (block, region_start, prev_sentinel) = if merge {
                let old = self.last;
                (old, word(old, 1), sentinel_link(old).0)
            } else {
                // `lo <= start <= first < sentinel_at`: inside the range.
                (base.add(first - lo), first, self.last)
            };
            let size = blocks;
            set_word(sentinel, 1, region_start);
            debug_assert!(slack.is_multiple_of(WORD) && slack / WORD < WORD);
            set_ptr(sentinel, 2, prev_sentinel.wrapping_add(slack / WORD));
            self.free_block(
                block,
                size,
                merge && header(block) & PREV_FREE != 0,
                sentinel,
            );
            if !merge {
                self.regions += 1;
            }
        }
        // `claimed` counts blocks and sentinels: merging turns the old
        // sentinel (and its slack) into part of a block.
        self.claimed += if merge {
            sentinel_at - self.last as usize
        } else {
            sentinel_at + SENTINEL - first
        };
        self.last = sentinel;
        Ok(())
    }

    /// Turns the newly claimed `b..b+size` into a free block, coalescing with a
    /// free predecessor (when `prev_free`), and writes the new sentinel `next`.
    ///
    /// # Safety
    /// `b..next` must be ours; `next == b + size`.
    unsafe fn free_block(&mut self, b: *mut u8, size: usize, prev_free: bool, next: *mut u8) {
        // SAFETY: guaranteed by the caller and the block invariants.
        unsafe {
            let mut start = b;
            let mut total = size;
            if prev_free {
                let psize = b.sub(WORD).cast::<usize>().read();
                start = b.sub(psize);
                total += psize;
                self.set.replace(start, psize, start, total);
            } else {
                self.set.insert(start, total);
            }
            make_free(start, total);
            set_header(next, PREV_FREE);
        }
    }

    #[inline(always)]
    pub(crate) fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // A `Layout` size is at most `isize::MAX`, so this cannot overflow;
        // an absurd `need` simply finds no block.
        let need = (layout.size() + WORD + S::GRAIN - 1) & !(S::GRAIN - 1);
        let need = need.max(MIN_BLOCK);
        debug_assert!(block_size_for(layout.size(), S::GRAIN).is_none_or(|n| n == need));
        let align = layout.align();
        if align <= S::GRAIN {
            // Every payload is `GRAIN`-aligned: no lead, no padding.
            if let Some((b, found)) = self.set.find_quick(need, &mut self.steps) {
                // SAFETY: `find_quick` returned a free block of ours, in the
                // set, of at least `need` bytes.
                return unsafe { Some(self.carve_head(b, found, need)) };
            }
        }
        self.allocate_slow(need, align)
    }

    /// `allocate` for over-aligned requests, and the rest of the search
    /// when the quick one failed. Out of line, so the common path needs no
    /// stack frame.
    #[inline(never)]
    fn allocate_slow(&mut self, need: usize, align: usize) -> Option<NonNull<u8>> {
        let (b, found) = if align <= S::GRAIN {
            self.set.find_rest(need, align, &mut self.steps)?
        } else {
            self.set.find(need, align, &mut self.steps)?
        };
        // SAFETY: the set returned a free block of ours that fits the request.
        unsafe {
            let lead = lead_in(b, align);
            debug_assert_eq!(Some(lead), lead_for(b, align));
            if lead == 0 {
                Some(self.carve_head(b, found, need))
            } else {
                let size = header(b) & !FLAGS;
                Some(self.carve_aligned(b, size, need, lead))
            }
        }
    }

    /// Allocates `need` bytes out of the free block `b` whose own payload
    /// (right after its header) is suitably aligned: a trailing remainder
    /// of at least `MIN_BLOCK` goes back to the set, a smaller one stays in
    /// the block.
    ///
    /// # Safety
    /// `b` and `found` must have just been returned by a `find*` method (so
    /// `b` is in the set) and `b` must hold at least `need` bytes.
    #[inline(always)]
    unsafe fn carve_head(&mut self, b: *mut u8, found: S::Found, need: usize) -> NonNull<u8> {
        // SAFETY: `b` is a free block in a region we own; all offsets stay
        // inside it because it holds `need` bytes.
        unsafe {
            let size = header(b) & !FLAGS;
            debug_assert!(size >= need);
            let rest = size - need;
            if rest >= MIN_BLOCK {
                let tail = b.add(need);
                // (Tags first: `replace_found` only touches link words.)
                make_free(tail, rest);
                set_header(b, need);
                let b = self.set.replace_found(b, found, size, tail, rest);
                NonNull::new_unchecked(b.add(WORD))
            } else {
                self.set.remove_found(b, found, size);
                set_header(b, size);
                let next = b.add(size);
                set_header(next, header(next) & !PREV_FREE);
                NonNull::new_unchecked(b.add(WORD))
            }
        }
    }

    /// Allocates `need` bytes with a payload `lead` bytes into the free
    /// block `b` (of `size` bytes): a lead of at least `MIN_BLOCK` and a
    /// trailing remainder of at least `MIN_BLOCK` go back to the set; a
    /// smaller lead becomes padding, a smaller remainder stays in the block.
    ///
    /// # Safety
    /// `b` must be in the set, `lead = lead_for(b, align) > 0` and
    /// `lead + need <= size`.
    #[inline(always)]
    unsafe fn carve_aligned(
        &mut self,
        b: *mut u8,
        size: usize,
        need: usize,
        lead: usize,
    ) -> NonNull<u8> {
        // SAFETY: `b` is a free block of ours in the set and `lead + need <= size`,
        // so every offset below stays inside it.
        unsafe {
            let (start, pad, lead_free) = if lead >= MIN_BLOCK {
                (b.add(lead), 0, lead)
            } else {
                (b, lead, 0)
            };
            let avail = size - lead_free;
            let rest = avail - (need + pad);
            let (take, trail) = if rest >= MIN_BLOCK {
                (need + pad, rest)
            } else {
                (avail, 0)
            };
            let tail = start.add(take);
            match (lead_free != 0, trail != 0) {
                (false, false) => {
                    self.set.remove(b, size);
                }
                (true, false) => self.set.replace(b, size, b, lead_free),
                (false, true) => self.set.replace(b, size, tail, trail),
                (true, true) => {
                    self.set.replace(b, size, b, lead_free);
                    self.set.insert_after(b, tail, trail);
                }
            }
            if lead_free != 0 {
                make_free(b, lead_free);
                set_header(start, take | PREV_FREE);
            } else {
                set_header(start, take);
            }
            if pad != 0 {
                set_word(start, pad / WORD, pad | PADDED);
            }
            if trail != 0 {
                make_free(tail, trail);
            } else {
                set_header(tail, header(tail) & !PREV_FREE);
            }
            NonNull::new_unchecked(start.add(pad + WORD))
        }
    }

    /// # Safety
    /// See [`crate::RegionAlloc::deallocate`].
    #[inline(always)]
    pub(crate) unsafe fn deallocate(&mut self, p: NonNull<u8>) {
        // SAFETY: `p` came from `allocate`, so a header precedes it and its
        // neighbours are valid blocks of the same region.
        unsafe {
            let (b, h) = block_of(p.as_ptr());
            if h & FREE != 0 {
                debug_assert!(false, "double free");
                return;
            }
            let size = h & !FLAGS;
            if S::LIFO {
                self.free_unordered(b, h, size);
                return;
            }
            let next = b.add(size);
            let nh = header(next);
            let mut start = b;
            let mut total = size;
            if nh & FREE != 0 {
                let nsize = nh & !FLAGS;
                total += nsize;
                if h & PREV_FREE != 0 {
                    let psize = b.sub(WORD).cast::<usize>().read();
                    start = b.sub(psize);
                    total += psize;
                    self.set.remove(next, nsize);
                    self.set.replace(start, psize, start, total);
                } else {
                    self.set.replace(next, nsize, b, total);
                }
                // The block after `next` already has PREV_FREE.
            } else {
                if h & PREV_FREE != 0 {
                    let psize = b.sub(WORD).cast::<usize>().read();
                    start = b.sub(psize);
                    total += psize;
                    self.set.replace(start, psize, start, total);
                } else {
                    self.set.insert(b, total);
                }
                set_header(next, nh | PREV_FREE);
            }
            make_free(start, total);
        }
    }

    /// `deallocate` for an unordered (`LIFO`) free set, after the header
    /// checks: unlink whichever neighbours are free, then insert the merged
    /// block once (there is no list position to keep). `b` is the block
    /// being freed, `h` its header and `size` its size.
    ///
    /// # Safety
    /// `b` is a live block with header `h`.
    #[inline(always)]
    unsafe fn free_unordered(&mut self, b: *mut u8, h: usize, size: usize) {
        // SAFETY: `b` is live, so its successor is a block (or the sentinel)
        // of the same region, and `PREV_FREE` says whether the footer in
        // front of it belongs to a free predecessor.
        unsafe {
            let mut start = b;
            let mut end = b.add(size);
            if h & PREV_FREE != 0 {
                let psize = b.sub(WORD).cast::<usize>().read();
                start = b.sub(psize);
                self.set.remove(start, psize);
            }
            let nh = header(end);
            if nh & FREE != 0 {
                let nsize = nh & !FLAGS;
                self.set.remove(end, nsize);
                end = end.add(nsize);
            } else {
                set_header(end, nh | PREV_FREE);
            }
            let total = end as usize - start as usize;
            self.set.insert(start, total);
            make_free(start, total);
        }
    }

    /// Resizes in place if the block or its free successor allows it.
    ///
    /// # Safety
    /// `p` must be a live allocation of this heap.
    pub(crate) unsafe fn resize_in_place(&mut self, p: NonNull<u8>, new_size: usize) -> bool {
        // SAFETY: `p` is live, so its header and successor are valid blocks.
        unsafe {
            let (b, h) = block_of(p.as_ptr());
            let pad = p.as_ptr() as usize - WORD - b as usize;
            let Some(need) = block_size_for(new_size, S::GRAIN).map(|n| n + pad) else {
                return false;
            };
            let size = h & !FLAGS;
            let next = b.add(size);
            let nh = header(next);
            let next_free = nh & FREE != 0;
            let nsize = nh & !FLAGS;
            if need <= size {
                let rest = size - need;
                if rest == 0 {
                    return true;
                }
                let tail = b.add(need);
                if next_free {
                    self.set.replace(next, nsize, tail, rest + nsize);
                    make_free(tail, rest + nsize);
                } else if rest >= MIN_BLOCK {
                    self.set.insert(tail, rest);
                    make_free(tail, rest);
                    set_header(next, nh | PREV_FREE);
                } else {
                    return true;
                }
                set_header(b, need | (h & PREV_FREE));
                return true;
            }
            if !next_free {
                return false;
            }
            let avail = size + nsize;
            if avail < need {
                return false;
            }
            let extra = avail - need;
            if extra >= MIN_BLOCK {
                let tail = b.add(need);
                self.set.replace(next, nsize, tail, extra);
                make_free(tail, extra);
                set_header(b, need | (h & PREV_FREE));
            } else {
                self.set.remove(next, nsize);
                let after = b.add(avail);
                set_header(after, header(after) & !PREV_FREE);
                set_header(b, avail | (h & PREV_FREE));
            }
            true
        }
    }

    /// # Safety
    /// See [`crate::RegionAlloc::reallocate`].
    pub(crate) unsafe fn reallocate(
        &mut self,
        p: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            if self.resize_in_place(p, new_size) {
                return Some(p);
            }
            let layout = Layout::from_size_align(new_size, old.align()).ok()?;
            let q = self.allocate(layout)?;
            ptr::copy_nonoverlapping(p.as_ptr(), q.as_ptr(), old.size().min(new_size));
            self.deallocate(p);
            Some(q)
        }
    }

    /// O(free blocks): walks the free set; the bytes in use are everything
    /// claimed that is neither free nor a sentinel.
    pub(crate) fn stats(&self) -> RegionStats {
        let t = self.set.tally();
        RegionStats {
            claimed: self.claimed,
            in_use: self.claimed - t.bytes - SENTINEL * self.regions,
            free: t.bytes,
            largest_free: t.largest,
            free_blocks: t.blocks,
            search_steps: self.steps,
        }
    }

    /// Walks every region and checks the block and free-set invariants.
    pub(crate) fn check_invariants(&self) -> Result<(), &'static str> {
        let (mut free_n, mut free_b, mut used_b, mut regions) = (0usize, 0usize, 0usize, 0usize);
        let mut s = self.last;
        while !s.is_null() {
            regions += 1;
            // SAFETY: the sentinel chain and the blocks between a region start
            // and its sentinel are ours; sizes are validated before each step.
            unsafe {
                if header(s) & !PREV_FREE != 0 {
                    return Err("sentinel header corrupt");
                }
                let mut b = word(s, 1) as *mut u8;
                let mut prev_free = false;
                while b != s {
                    if (b as usize) > (s as usize) {
                        return Err("block runs past its region");
                    }
                    let h = header(b);
                    let size = h & !FLAGS;
                    if size < MIN_BLOCK || !size.is_multiple_of(S::GRAIN) {
                        return Err("bad block size");
                    }
                    if !(b as usize + WORD).is_multiple_of(S::GRAIN) {
                        return Err("misaligned block");
                    }
                    if (h & PREV_FREE != 0) != prev_free {
                        return Err("PREV_FREE flag disagrees with predecessor");
                    }
                    let is_free = h & FREE != 0;
                    if is_free {
                        if prev_free {
                            return Err("two adjacent free blocks (missed coalesce)");
                        }
                        if b.add(size - WORD).cast::<usize>().read() != size {
                            return Err("free block footer != size");
                        }
                        free_n += 1;
                        free_b += size;
                    } else {
                        used_b += size;
                    }
                    prev_free = is_free;
                    b = b.add(size);
                }
                if (header(s) & PREV_FREE != 0) != prev_free {
                    return Err("sentinel PREV_FREE flag disagrees");
                }
                s = sentinel_link(s).0;
            }
        }
        if regions != self.regions {
            return Err("region count mismatch");
        }
        let t = self.set.tally();
        if t.blocks != free_n || t.bytes != free_b {
            return Err("free-set tally disagrees with the heap walk");
        }
        if used_b + free_b + SENTINEL * regions != self.claimed {
            return Err("blocks do not cover the claimed memory");
        }
        let (set_n, set_b) = self.set.check()?;
        if set_n != free_n || set_b != free_b {
            return Err("free set and heap walk disagree");
        }
        Ok(())
    }
}
