#![doc = include_str!("../README.md")]
//!
//! # Glossary
//!
//! * **Region** — a range of memory handed over with [`RegionAlloc::claim`].
//!   Claims that continue the most recently claimed region merge with it.
//! * **Block** — a piece of a region: a one-word *header* (`size | flags`)
//!   then the payload. Free blocks also carry two list links and a *footer*
//!   (their size in their last word): the *boundary tags* that let a freed
//!   block find and merge both physical neighbours in O(1).
//! * **Sentinel** — three words closing each region: a zero-size used block,
//!   the region's start and the previous region's sentinel.
//! * **Free set** — the index of free blocks: a doubly-linked list
//!   (address-ordered for first/next fit, LIFO for best fit) or TLSF bitmaps
//!   and lists (segregated fit).
//! * **Search step** — one free block examined while looking for a fit
//!   ([`RegionStats::search_steps`]).
//!
//! # Paths (free-list allocators)
//!
//! Allocation: 1. round the request up to a block size (`size + WORD`
//! rounded up to the heap's granularity — one word, or two for
//! `SegregatedFit` — and at least `4 * WORD`), 2. ask the free set for a
//! block that fits, with
//! alignment, 3. split off an aligned leading piece and a trailing piece if
//! they are big enough to be blocks, returning them to the free set,
//! 4. return the payload.
//!
//! Free: 1. read the header in front of the pointer, 2. merge with the next
//! block if its header says free, 3. merge with the previous block if our
//! `PREV_FREE` flag says so (its footer gives its start), 4. put the merged
//! block in the free set and set `PREV_FREE` on its successor.
//!
//! # Layers (bottom-up)
//!
//! `block` (tags) → `list` / `tlsf` (free sets) → `heap` (split, coalesce,
//! claim, realloc, stats, invariants) → the public types → `lock` (`Locked`,
//! `GlobalAlloc`, `Allocator`). [`Bump`] stands alone.
#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use core::alloc::Layout;
use core::ptr::NonNull;

mod block;
mod bump;
mod heap;
mod list;
mod lock;
mod tlsf;

pub use bump::Bump;
pub use lock::{LockGuard, Locked, RawLock, SpinLock};

use heap::Heap;

/// Why [`RegionAlloc::claim`] refused a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// Too small to hold one block plus the bookkeeping.
    TooSmall,
    /// `base + len` overflows the address space.
    AddressOverflow,
    /// The range overlaps memory the allocator already manages.
    Overlap,
}

impl core::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ClaimError::TooSmall => "region too small",
            ClaimError::AddressOverflow => "region wraps the address space",
            ClaimError::Overlap => "region overlaps a claimed region",
        })
    }
}

/// A snapshot of an allocator's bookkeeping. Sizes are in bytes and count
/// whole blocks (headers included), so for the free-list allocators
/// `in_use + free` equals `claimed` minus three words per region.
///
/// The free-list allocators keep no per-call counters of bytes or blocks
/// (they would cost every allocation and free a read-modify-write):
/// [`RegionAlloc::stats`] walks their free set, in O(free blocks), and
/// derives `in_use` from `claimed`. Only `search_steps` is counted as it
/// happens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionStats {
    /// Bytes under management: blocks and sentinels, after trimming each
    /// range to the allocator's granularity (a word; two words for
    /// `SegregatedFit`, which may leave one word unused at each end).
    pub claimed: usize,
    /// Bytes in live blocks (for `Bump`: bytes consumed since the last reset).
    pub in_use: usize,
    /// Bytes in free blocks.
    pub free: usize,
    /// Size of the largest free block.
    pub largest_free: usize,
    /// Number of free blocks.
    pub free_blocks: usize,
    /// Free blocks (bump: chunks) examined by allocation searches so far.
    pub search_steps: u64,
}

/// The interface every allocator of this crate implements.
pub trait RegionAlloc {
    /// Hands the allocator the memory `base..base + len`. May be called again
    /// to add more; a range starting where the last one ended merges with it.
    ///
    /// # Safety
    /// * `base..base + len` must be valid for reads and writes and must not be
    ///   used by anything else for as long as the allocator (or any block it
    ///   handed out) is in use;
    /// * it must not overlap a range given to another allocator.
    unsafe fn claim(&mut self, base: *mut u8, len: usize) -> Result<(), ClaimError>;

    /// Allocates a block for `layout` (any power-of-two alignment), or `None`
    /// when no free block fits. Never panics.
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>>;

    /// Frees a block.
    ///
    /// # Safety
    /// `ptr` must have been returned by this allocator's `allocate` or
    /// `reallocate` with `layout` (for `reallocate`: the old alignment and the
    /// new size) and not been freed since.
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout);

    /// Resizes a block to `new_size` bytes, keeping `old.align()`: in place
    /// when the block or its free neighbour allows, else allocate, copy,
    /// free. On `None` the old block is untouched and still live.
    ///
    /// # Safety
    /// As for [`RegionAlloc::deallocate`] with `old` as the layout.
    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>>;

    /// Current statistics. O(1) for `Bump`; O(free blocks) for the
    /// free-list allocators, which walk their free set (see [`RegionStats`]).
    fn stats(&self) -> RegionStats;
}

/// Defines a public free-list allocator type over `Heap<$set>`.
macro_rules! free_list_type {
    ($(#[$doc:meta])* $name:ident, $set:ty) => {
        $(#[$doc])*
        pub struct $name {
            heap: Heap<$set>,
        }

        // SAFETY: the allocator only holds pointers into memory handed to it by
        // `claim`, whose owner promised exclusive use; moving it is fine.
        unsafe impl Send for $name {}

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl $name {
            /// An allocator with no memory; give it some with [`RegionAlloc::claim`].
            pub const fn new() -> Self {
                $name { heap: Heap::new() }
            }

            /// Walks every block of every region and checks the invariants:
            /// tags and footers agree, no two free blocks are adjacent, the
            /// free index holds exactly the free blocks (the walk behind
            /// [`RegionAlloc::stats`] agrees with the block walk), and the
            /// blocks and sentinels cover the claimed memory. O(blocks); for
            /// tests and debugging.
            pub fn check_invariants(&self) -> Result<(), &'static str> {
                self.heap.check_invariants()
            }
        }

        impl RegionAlloc for $name {
            unsafe fn claim(&mut self, base: *mut u8, len: usize) -> Result<(), ClaimError> {
                // SAFETY: forwarded from the caller.
                unsafe { self.heap.claim(base, len) }
            }

            #[inline]
            fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
                self.heap.allocate(layout)
            }

            #[inline]
            unsafe fn deallocate(&mut self, ptr: NonNull<u8>, _layout: Layout) {
                // SAFETY: forwarded from the caller.
                unsafe { self.heap.deallocate(ptr) }
            }

            #[inline]
            unsafe fn reallocate(&mut self, ptr: NonNull<u8>, old: Layout, new_size: usize) -> Option<NonNull<u8>> {
                // SAFETY: forwarded from the caller.
                unsafe { self.heap.reallocate(ptr, old, new_size) }
            }

            fn stats(&self) -> RegionStats {
                self.heap.stats()
            }
        }
    };
}

free_list_type! {
    /// First fit: the lowest-addressed free block that fits.
    ///
    /// * **Choose it** for small heaps where simplicity and predictable,
    ///   address-ordered reuse matter more than speed: it tends to keep the
    ///   top of the heap free for large requests.
    /// * **Time:** allocation O(free blocks) (a scan from the lowest block);
    ///   free O(1) when a neighbour is free, else O(free blocks) to find the
    ///   address-ordered position; in-place realloc O(1).
    /// * **Fragmentation:** low in practice (address-ordered first fit is
    ///   among the best classic policies), but small splinters gather at the
    ///   bottom of the heap and lengthen every search.
    ///
    /// ```
    /// use core::alloc::Layout;
    /// use segfit_region::{FirstFit, RegionAlloc};
    ///
    /// let mut memory = vec![0u8; 4096];
    /// let mut heap = FirstFit::new();
    /// // SAFETY: `memory` outlives `heap` and is used for nothing else.
    /// unsafe { heap.claim(memory.as_mut_ptr(), memory.len()) }.unwrap();
    /// let l = Layout::from_size_align(64, 8).unwrap();
    /// let a = heap.allocate(l).unwrap();
    /// let _b = heap.allocate(l).unwrap();
    /// // SAFETY: `a` is live with layout `l`.
    /// unsafe { heap.deallocate(a, l) };
    /// // The hole at the bottom is the lowest fit: it is reused.
    /// assert_eq!(heap.allocate(l), Some(a));
    /// heap.check_invariants().unwrap();
    /// ```
    FirstFit, list::List<list::First>
}

free_list_type! {
    /// Next fit: first fit that resumes where the previous search stopped.
    ///
    /// * **Choose it** when allocations come in bursts of similar objects and
    ///   you want to avoid rescanning the splinters at the bottom of the heap.
    /// * **Time:** allocation O(free blocks) worst case, often O(1) in
    ///   practice; free O(1) with a free neighbour, else O(free blocks);
    ///   in-place realloc O(1).
    /// * **Fragmentation:** usually worse than first fit: spreading
    ///   allocations over the whole heap breaks up large free blocks.
    ///
    /// ```
    /// use core::alloc::Layout;
    /// use segfit_region::{NextFit, RegionAlloc};
    ///
    /// let mut memory = vec![0u8; 4096];
    /// let mut heap = NextFit::new();
    /// // SAFETY: `memory` outlives `heap` and is used for nothing else.
    /// unsafe { heap.claim(memory.as_mut_ptr(), memory.len()) }.unwrap();
    /// let l = Layout::from_size_align(64, 8).unwrap();
    /// let a = heap.allocate(l).unwrap();
    /// let b = heap.allocate(l).unwrap();
    /// // SAFETY: `a` is live with layout `l`.
    /// unsafe { heap.deallocate(a, l) };
    /// // The search resumes after `b`, so the hole left by `a` is skipped.
    /// let c = heap.allocate(l).unwrap();
    /// assert!(c > b);
    /// ```
    NextFit, list::List<list::Next>
}

free_list_type! {
    /// Best fit: the smallest free block that fits (stops early on an exact
    /// fit).
    ///
    /// * **Choose it** when memory is tight and the heap is small: it wastes
    ///   the least space of the list policies.
    /// * **Time:** allocation O(free blocks) — always a full scan unless an
    ///   exact fit turns up; free O(1) (its list is not address-ordered:
    ///   the scan compares sizes only, so a freed block is pushed on the
    ///   front; of several equally small fits, the most recently freed one
    ///   is taken); in-place realloc O(1).
    /// * **Fragmentation:** lowest of the classic policies on most workloads;
    ///   leftovers of near-fits are tiny splinters, which later coalesce.
    ///
    /// ```
    /// use core::alloc::Layout;
    /// use segfit_region::{BestFit, RegionAlloc};
    ///
    /// let mut memory = vec![0u8; 4096];
    /// let mut heap = BestFit::new();
    /// // SAFETY: `memory` outlives `heap` and is used for nothing else.
    /// unsafe { heap.claim(memory.as_mut_ptr(), memory.len()) }.unwrap();
    /// let big = Layout::from_size_align(256, 8).unwrap();
    /// let small = Layout::from_size_align(64, 8).unwrap();
    /// let a = heap.allocate(big).unwrap();
    /// let _x = heap.allocate(small).unwrap();
    /// let b = heap.allocate(small).unwrap();
    /// let _y = heap.allocate(small).unwrap();
    /// // SAFETY: both are live with these layouts.
    /// unsafe { heap.deallocate(a, big); heap.deallocate(b, small) };
    /// // The 64-byte hole is the best fit, although the 256-byte one is lower.
    /// assert_eq!(heap.allocate(small), Some(b));
    /// ```
    BestFit, list::List<list::Best>
}

free_list_type! {
    /// Two-level segregated fit (TLSF): O(1) allocation and free with
    /// immediate coalescing.
    ///
    /// * **Choose it** as the general-purpose heap of a kernel, RTOS or
    ///   firmware, and whenever you need a bound on allocation time
    ///   (real-time code).
    /// * **Time:** allocate, free and in-place realloc are O(1): a size maps
    ///   to list `(fl, sl)` with `leading_zeros`, and a non-empty list of
    ///   large-enough blocks is found with two `trailing_zeros` on bitmaps.
    ///   Only when that fails (the heap is nearly full) does it scan the
    ///   request's own size class before returning `None`.
    /// * **Fragmentation and waste bound:** each power-of-two range of sizes
    ///   is split into `2^SL_BITS = 32` classes. To be O(1), a request of `n`
    ///   bytes is rounded up to the next class boundary, so it may skip a free
    ///   block of the same class that would have fit; the rounding is less
    ///   than `n / 32` (a 1/2^k bound with k = 5), see
    ///   [`SegregatedFit::search_size`]. The block handed out is then split
    ///   to the request, so the rounding is not lost as internal waste.
    ///   Freed blocks go to the front of their list (LIFO), which is
    ///   cache-friendly but not address-ordered.
    /// * **Granularity:** block sizes are multiples of two words (16 bytes
    ///   on 64-bit targets) and every payload is 16-byte aligned, so
    ///   requests with `align <= 16` (almost all) never need padding; sizes
    ///   under 512 B have exact 16-byte classes. Up to 15 bytes of rounding
    ///   per block is the price (heap efficiency 95.8% in the benchmark,
    ///   against 96.2% with one-word granularity).
    /// * **Statistics:** [`RegionAlloc::stats`] is O(free blocks): it walks
    ///   the lists rather than keep counters on the hot paths.
    ///
    /// ```
    /// use core::alloc::Layout;
    /// use segfit_region::{RegionAlloc, SegregatedFit};
    ///
    /// let mut memory = vec![0u8; 1 << 16];
    /// let mut heap = SegregatedFit::new();
    /// // SAFETY: `memory` outlives `heap` and is used for nothing else.
    /// unsafe { heap.claim(memory.as_mut_ptr(), memory.len()) }.unwrap();
    /// let l = Layout::from_size_align(1000, 64).unwrap();
    /// let p = heap.allocate(l).unwrap();
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// // SAFETY: `p` is live with layout `l`.
    /// let q = unsafe { heap.reallocate(p, l, 2000) }.unwrap();
    /// assert_eq!(p, q, "grown in place into the free space after it");
    /// assert!(SegregatedFit::search_size(1000).unwrap() - 1000 < 1000 / 32);
    /// ```
    SegregatedFit, tlsf::Tlsf
}

impl SegregatedFit {
    /// Number of second-level classes per power of two, as a power of two:
    /// the waste bound of the O(1) search is `1 / 2^SL_BITS`.
    pub const SL_BITS: u32 = tlsf::SL_BITS;

    /// The block size the O(1) search asks for when it needs a block of
    /// `size` bytes: `size` rounded up to a size-class boundary (block sizes
    /// are multiples of 16 bytes, on 64-bit targets; for such sizes under
    /// 512 B the classes are exact and nothing is rounded). Always
    /// `size <= search_size(size) < size + size / 2^SL_BITS + 1`
    /// (the documented waste bound). `None` on overflow.
    pub fn search_size(size: usize) -> Option<usize> {
        tlsf::search_size(size)
    }
}
