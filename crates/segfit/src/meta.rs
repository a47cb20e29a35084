//! Metadata allocation: fixed-size records (spans, huge-block records, thread caches) carved from
//! chunks mapped straight from the OS, never from the heap that they describe (Go's `fixalloc`).
//!
//! Invariant: a record is either on the free list or owned by exactly one user. Records are never
//! returned to the OS (they are small and reused). Not thread-safe by itself: each `FixAlloc` is
//! protected by the lock of the structure that owns it (the page heap's lock for spans).

use crate::os::{self, Why};
use core::ptr;

const CHUNK: usize = 256 << 10;

/// A free-list allocator of `T`-sized records.
pub struct FixAlloc<T> {
    free: *mut T,
    chunk: *mut u8,
    chunk_left: usize,
    /// Records handed out and not yet freed.
    pub in_use: usize,
    /// Bytes mapped for records.
    pub mapped: usize,
}

impl<T> FixAlloc<T> {
    const SIZE: usize = {
        let s = core::mem::size_of::<T>();
        let a = core::mem::align_of::<T>();
        let s = if s < 8 { 8 } else { s };
        s.div_ceil(a) * a
    };

    /// An empty allocator; maps nothing until the first `alloc`.
    pub const fn new() -> Self {
        FixAlloc {
            free: ptr::null_mut(),
            chunk: ptr::null_mut(),
            chunk_left: 0,
            in_use: 0,
            mapped: 0,
        }
    }

    /// A zeroed record, or null if the OS refuses memory.
    pub fn alloc(&mut self) -> *mut T {
        let p = if !self.free.is_null() {
            let p = self.free;
            // SAFETY: free records hold the next free record's address in their first word.
            self.free = unsafe { *(p as *mut *mut T) };
            // SAFETY: `p` is a whole record of ours, unused.
            unsafe { ptr::write_bytes(p as *mut u8, 0, Self::SIZE) };
            p
        } else {
            if self.chunk_left < Self::SIZE {
                let len = CHUNK.max(Self::SIZE);
                let c = os::map(len, os::page_size(), Why::Meta);
                if c.is_null() {
                    return ptr::null_mut();
                }
                self.mapped += len;
                self.chunk = c;
                self.chunk_left = len;
            }
            let p = self.chunk as *mut T;
            // SAFETY: at least SIZE bytes remain in the chunk, so the bump stays inside it.
            self.chunk = unsafe { self.chunk.add(Self::SIZE) };
            self.chunk_left -= Self::SIZE;
            p // fresh mapped memory is already zero
        };
        self.in_use += 1;
        p
    }

    /// Returns a record to the free list.
    ///
    /// # Safety
    /// `p` came from `self.alloc()` and is not used afterwards.
    pub unsafe fn free(&mut self, p: *mut T) {
        // SAFETY: the record is ours and at least one word long.
        unsafe { *(p as *mut *mut T) = self.free };
        self.free = p;
        self.in_use -= 1;
    }
}

impl<T> Default for FixAlloc<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_zeroed_distinct_and_reused() {
        let mut f: FixAlloc<[u64; 5]> = FixAlloc::new();
        let a = f.alloc();
        let b = f.alloc();
        assert_ne!(a, b);
        // SAFETY: a is a live record.
        unsafe {
            (*a)[3] = 9;
            f.free(a);
        }
        let c = f.alloc();
        assert_eq!(c, a);
        // SAFETY: c is a live, zeroed record.
        assert_eq!(unsafe { *c }, [0; 5]);
        assert_eq!(f.in_use, 2);
    }
}
