//! `Bump`: pointer-bump allocation over one or more claimed chunks.
//!
//! Each claimed range starts with a two-word chunk header `[next, end]`; the
//! chunks form a singly linked list in claim order. Allocation bumps `ptr`
//! upwards inside the current chunk `cur`; when it does not fit, the rest of
//! `cur` is abandoned (until `reset`) and the next chunk is tried.
//!
//! Invariants:
//! * `cur` is null (nothing claimed) or a chunk of the list, and
//!   `data(cur) <= ptr <= end == cur.end`;
//! * every chunk after `cur` is untouched since the last `reset`;
//! * `head`/`tail` are the first/last chunks, `claimed` the sum of their sizes
//!   including headers.

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use crate::{ClaimError, RegionAlloc, RegionStats};

const WORD: usize = core::mem::size_of::<usize>();
/// Chunk header: `[next chunk, end of chunk]`.
const CHUNK_HDR: usize = 2 * WORD;

/// The fastest choice when everything allocated dies together: a bump
/// pointer.
///
/// * **Choose it** for arenas, per-frame or per-request scratch memory, and
///   boot-time allocations that are never freed.
/// * **Stats:** `claimed` counts usable bytes (chunk headers excluded), so
///   `in_use` is 0 right after `reset`.
/// * **Time:** O(1) allocation (one add, one compare); moving to the next
///   chunk is O(number of chunks) only when the current one is exhausted.
/// * **Fragmentation:** none inside a chunk except alignment padding, but
///   freed memory is not reused: [`deallocate`](RegionAlloc::deallocate) only
///   takes back the most recent block (stack-like), everything else waits
///   for [`reset`](Bump::reset).
///
/// ```
/// use core::alloc::Layout;
/// use segfit_region::{Bump, RegionAlloc};
///
/// let mut memory = [0u64; 128];
/// let mut bump = Bump::new();
/// // SAFETY: `memory` outlives `bump` and is used for nothing else.
/// unsafe { bump.claim(memory.as_mut_ptr().cast(), 1024) }.unwrap();
/// let a = bump.allocate(Layout::new::<u64>()).unwrap();
/// let b = bump.allocate(Layout::new::<[u8; 100]>()).unwrap();
/// assert!(a < b);
/// // SAFETY: `b` is the most recent block, so this takes it back.
/// unsafe { bump.deallocate(b, Layout::new::<[u8; 100]>()) };
/// assert_eq!(bump.allocate(Layout::new::<[u8; 100]>()), Some(b));
/// bump.reset();
/// assert_eq!(bump.stats().in_use, 0);
/// ```
pub struct Bump {
    ptr: *mut u8,
    end: *mut u8,
    cur: *mut u8,
    head: *mut u8,
    tail: *mut u8,
    claimed: usize,
    steps: u64,
}

// SAFETY: `Bump` only holds pointers into memory handed to it by `claim`,
// whose owner promised exclusive use; moving it between threads is fine.
unsafe impl Send for Bump {}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

/// # Safety
/// `c` must be a chunk header written by `Bump::claim`.
#[inline(always)]
unsafe fn chunk_next(c: *mut u8) -> *mut u8 {
    // SAFETY: caller's contract.
    unsafe { c.cast::<*mut u8>().read() }
}

/// # Safety
/// `c` must be a chunk header written by `Bump::claim`.
#[inline(always)]
unsafe fn chunk_end(c: *mut u8) -> *mut u8 {
    // SAFETY: caller's contract.
    unsafe { c.cast::<*mut u8>().add(1).read() }
}

impl Bump {
    /// An allocator with no memory; give it some with [`RegionAlloc::claim`].
    pub const fn new() -> Self {
        Bump {
            ptr: ptr::null_mut(),
            end: ptr::null_mut(),
            cur: ptr::null_mut(),
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            claimed: 0,
            steps: 0,
        }
    }

    /// Frees everything at once: the next allocation starts at the bottom of
    /// the first chunk again. O(1).
    pub fn reset(&mut self) {
        self.cur = self.head;
        if !self.head.is_null() {
            // SAFETY: `head` is a chunk header we wrote.
            unsafe {
                self.ptr = self.head.add(CHUNK_HDR);
                self.end = chunk_end(self.head);
            }
        }
    }

    /// Moves to the next chunk that can hold `layout`.
    #[cold]
    fn allocate_slow(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let mut c = if self.cur.is_null() {
            self.head
        } else {
            // SAFETY: `cur` is a chunk header we wrote.
            unsafe { chunk_next(self.cur) }
        };
        while !c.is_null() {
            self.steps += 1;
            // SAFETY: `c` walks our chunk list.
            let (data, end) = unsafe { (c.add(CHUNK_HDR), chunk_end(c)) };
            let start = crate::block::align_up(data as usize, layout.align())?;
            if let Some(stop) = start.checked_add(layout.size()) {
                if stop <= end as usize {
                    self.cur = c;
                    self.end = end;
                    // SAFETY: `start..stop` lies inside chunk `c`.
                    unsafe {
                        self.ptr = data.add(stop - data as usize);
                        return Some(NonNull::new_unchecked(data.add(start - data as usize)));
                    }
                }
            }
            // SAFETY: `c` is a chunk header we wrote.
            c = unsafe { chunk_next(c) };
        }
        None
    }
}

impl RegionAlloc for Bump {
    unsafe fn claim(&mut self, base: *mut u8, len: usize) -> Result<(), ClaimError> {
        let lo = base as usize;
        let hi = lo.checked_add(len).ok_or(ClaimError::AddressOverflow)?;
        // Memory right after the last chunk extends it.
        if !self.tail.is_null() && len > 0 {
            // SAFETY: `tail` is a chunk header we wrote.
            let tail_end = unsafe { chunk_end(self.tail) };
            if tail_end == base {
                // SAFETY: the chunk header is ours; `hi` bounds the new end.
                unsafe { self.tail.cast::<*mut u8>().add(1).write(base.add(len)) };
                if self.cur == self.tail {
                    self.end = base.wrapping_add(len);
                }
                self.claimed += len;
                return Ok(());
            }
        }
        let start = crate::block::align_up(lo, WORD).ok_or(ClaimError::AddressOverflow)?;
        if hi < start || hi - start <= CHUNK_HDR {
            return Err(ClaimError::TooSmall);
        }
        // SAFETY: `start..hi` is inside the caller's range, which we now own.
        unsafe {
            let c = base.add(start - lo);
            let end = base.add(len);
            c.cast::<*mut u8>().write(ptr::null_mut());
            c.cast::<*mut u8>().add(1).write(end);
            if self.tail.is_null() {
                self.head = c;
                self.cur = c;
                self.ptr = c.add(CHUNK_HDR);
                self.end = end;
            } else {
                self.tail.cast::<*mut u8>().write(c);
            }
            self.tail = c;
        }
        self.claimed += hi - start - CHUNK_HDR;
        Ok(())
    }

    #[inline(always)]
    fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.steps += 1;
        let p = self.ptr as usize;
        let mask = layout.align() - 1;
        if let Some(bumped) = p.checked_add(mask) {
            let start = bumped & !mask;
            if let Some(stop) = start.checked_add(layout.size()) {
                if stop <= self.end as usize && p != 0 {
                    // SAFETY: `start..stop` lies in the current chunk.
                    unsafe {
                        self.ptr = self.ptr.add(stop - p);
                        return Some(NonNull::new_unchecked(self.ptr.sub(stop - start)));
                    }
                }
            }
        }
        self.allocate_slow(layout)
    }

    /// Frees `ptr` only if it is the most recent block (it ends at the bump
    /// pointer); otherwise does nothing until [`Bump::reset`].
    #[inline]
    unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        if ptr.as_ptr().wrapping_add(layout.size()) == self.ptr {
            self.ptr = ptr.as_ptr();
        }
    }

    unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new_size: usize,
    ) -> Option<NonNull<u8>> {
        let p = ptr.as_ptr();
        if p.wrapping_add(old.size()) == self.ptr {
            // The most recent block: move the bump pointer.
            let stop = (p as usize).checked_add(new_size)?;
            if stop <= self.end as usize {
                self.ptr = p.wrapping_add(new_size);
                return Some(ptr);
            }
        } else if new_size <= old.size() {
            return Some(ptr);
        }
        let layout = Layout::from_size_align(new_size, old.align()).ok()?;
        let q = self.allocate(layout)?;
        // SAFETY: `q` is fresh and disjoint from the live block `ptr`.
        unsafe { ptr::copy_nonoverlapping(p, q.as_ptr(), old.size().min(new_size)) };
        Some(q)
    }

    fn stats(&self) -> RegionStats {
        let mut free = 0;
        let mut largest = 0;
        let mut blocks = 0;
        let mut add = |n: usize| {
            if n > 0 {
                free += n;
                largest = largest.max(n);
                blocks += 1;
            }
        };
        if !self.cur.is_null() {
            add(self.end as usize - self.ptr as usize);
            // SAFETY: walking our chunk list.
            let mut c = unsafe { chunk_next(self.cur) };
            while !c.is_null() {
                // SAFETY: as above.
                unsafe {
                    add(chunk_end(c) as usize - c as usize - CHUNK_HDR);
                    c = chunk_next(c);
                }
            }
        }
        RegionStats {
            claimed: self.claimed,
            in_use: self.claimed - free,
            free,
            largest_free: largest,
            free_blocks: blocks,
            search_steps: self.steps,
        }
    }
}
