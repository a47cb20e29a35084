//! Address-ordered doubly-linked free list: the free set behind `FirstFit`,
//! `NextFit` and `BestFit`. The three differ only in their [`Policy`] (how
//! `find` walks the list); splitting and coalescing live in `heap.rs`.
//!
//! Invariants (checked by `List::check`):
//! * the list holds every free block once, in strictly increasing address
//!   order for first and next fit (best fit: any order, see
//!   `Policy::ORDERED`); `next` is word 1 of a free block and `prev` word 2;
//! * `head.prev` is null and `x.next.prev == x` for every node;
//! * `rover` (next-fit's resume point) is null or a node of the list.

use core::marker::PhantomData;
use core::ptr;

use crate::block::*;
use crate::heap::{FreeSet, Tally};

const NEXT: usize = 1;
const PREV: usize = 2;

/// How a list allocator chooses among the free blocks that fit.
pub(crate) trait Policy {
    /// Whether the list must be kept in address order. First and next fit
    /// are defined by address ("lowest fit", "next fit after the rover"),
    /// so their `insert` walks the list to a freed block's place: O(free
    /// blocks). Best fit scans every block anyway and only compares sizes,
    /// so its order is irrelevant: it pushes freed blocks on the front
    /// (LIFO) in O(1). Only ties between equal-size blocks may resolve
    /// differently (the most recently freed one wins instead of the lowest).
    const ORDERED: bool = true;

    /// Returns a fitting block, updating `rover` if the policy uses it.
    fn find(list: &mut List<Self>, need: usize, align: usize, steps: &mut u64) -> Option<*mut u8>
    where
        Self: Sized;
}

/// The address-ordered free list, generic over its search policy.
pub(crate) struct List<P> {
    head: *mut u8,
    /// Next-fit's roving pointer: where the next search starts.
    rover: *mut u8,
    _policy: PhantomData<P>,
}

#[inline(always)]
unsafe fn size_of_block(b: *mut u8) -> usize {
    // SAFETY: `b` is a free block of the list (caller's contract).
    unsafe { header(b) & !FLAGS }
}

#[inline(always)]
unsafe fn next(b: *mut u8) -> *mut u8 {
    // SAFETY: `b` is a node of the list (caller's contract).
    unsafe { ptr(b, NEXT) }
}

/// Takes the lowest-addressed block that fits.
pub(crate) struct First;
/// Resumes scanning at the block where the previous search ended.
pub(crate) struct Next;
/// Scans the whole list for the smallest block that fits.
pub(crate) struct Best;

impl Policy for First {
    fn find(list: &mut List<Self>, need: usize, align: usize, steps: &mut u64) -> Option<*mut u8> {
        let mut b = list.head;
        while !b.is_null() {
            *steps += 1;
            // SAFETY: `b` walks the list's nodes, all free blocks of ours.
            unsafe {
                if fits(b, size_of_block(b), need, align) {
                    return Some(b);
                }
                b = next(b);
            }
        }
        None
    }
}

impl Policy for Next {
    fn find(list: &mut List<Self>, need: usize, align: usize, steps: &mut u64) -> Option<*mut u8> {
        let start = if list.rover.is_null() {
            list.head
        } else {
            list.rover
        };
        let mut b = start;
        if b.is_null() {
            return None;
        }
        loop {
            *steps += 1;
            // SAFETY: `b` walks the list's nodes, all free blocks of ours.
            unsafe {
                if fits(b, size_of_block(b), need, align) {
                    list.rover = b;
                    return Some(b);
                }
                b = next(b);
            }
            if b.is_null() {
                b = list.head;
            }
            if b == start {
                return None;
            }
        }
    }
}

impl Policy for Best {
    const ORDERED: bool = false;

    fn find(list: &mut List<Self>, need: usize, align: usize, steps: &mut u64) -> Option<*mut u8> {
        let mut best: Option<(*mut u8, usize)> = None;
        let mut b = list.head;
        while !b.is_null() {
            *steps += 1;
            // SAFETY: `b` walks the list's nodes, all free blocks of ours.
            unsafe {
                let size = size_of_block(b);
                if best.is_none_or(|(_, s)| size < s) && fits(b, size, need, align) {
                    best = Some((b, size));
                    if size == need {
                        break;
                    }
                }
                b = next(b);
            }
        }
        best.map(|(b, _)| b)
    }
}

impl<P> List<P> {
    /// Links `b` between `prev` and `next` (either may be null).
    ///
    /// # Safety
    /// `b` is a free block; `prev`/`next` are adjacent nodes (or null ends).
    #[inline(always)]
    unsafe fn link(&mut self, b: *mut u8, prev: *mut u8, next: *mut u8) {
        // SAFETY: all three are free blocks of ours (or null, not dereferenced).
        unsafe {
            set_ptr(b, NEXT, next);
            set_ptr(b, PREV, prev);
            if prev.is_null() {
                self.head = b;
            } else {
                set_ptr(prev, NEXT, b);
            }
            if !next.is_null() {
                set_ptr(next, PREV, b);
            }
        }
    }
}

// SAFETY: `find` only returns list nodes and checks `fits` first.
unsafe impl<P: Policy> FreeSet for List<P> {
    const EMPTY: Self = List {
        head: ptr::null_mut(),
        rover: ptr::null_mut(),
        _policy: PhantomData,
    };

    type Found = ();

    #[inline]
    fn find(&mut self, need: usize, align: usize, steps: &mut u64) -> Option<(*mut u8, ())> {
        P::find(self, need, align, steps).map(|b| (b, ()))
    }

    unsafe fn insert(&mut self, b: *mut u8, _size: usize) {
        if !P::ORDERED {
            // SAFETY: linking a free block of ours in front of the head.
            unsafe { self.link(b, ptr::null_mut(), self.head) };
            return;
        }
        // Address-ordered insertion: walk to the first node above `b`.
        let mut prev = ptr::null_mut();
        let mut cur = self.head;
        // SAFETY: walking our own nodes; then linking a free block of ours.
        unsafe {
            while !cur.is_null() && (cur as usize) < (b as usize) {
                prev = cur;
                cur = next(cur);
            }
            self.link(b, prev, cur);
        }
    }

    unsafe fn insert_after(&mut self, anchor: *mut u8, b: *mut u8, _size: usize) {
        // SAFETY: `anchor` is a node and `b` its address-order successor.
        unsafe {
            let n = next(anchor);
            self.link(b, anchor, n);
        }
    }

    unsafe fn remove(&mut self, b: *mut u8, _size: usize) {
        // SAFETY: `b` is a node, so its links are valid nodes or null.
        unsafe {
            let (n, p) = (ptr(b, NEXT), ptr(b, PREV));
            if p.is_null() {
                self.head = n;
            } else {
                set_ptr(p, NEXT, n);
            }
            if !n.is_null() {
                set_ptr(n, PREV, p);
            }
            if self.rover == b {
                self.rover = n;
            }
        }
    }

    unsafe fn replace(&mut self, old: *mut u8, _old_size: usize, new: *mut u8, _new_size: usize) {
        if old == new {
            return; // same start address: links and order are unchanged
        }
        // SAFETY: `old` is a node; `new` takes its place (read links first,
        // since the two blocks may overlap).
        unsafe {
            let (n, p) = (ptr(old, NEXT), ptr(old, PREV));
            self.link(new, p, n);
        }
        if self.rover == old {
            self.rover = new;
        }
    }

    fn tally(&self) -> Tally {
        let mut t = Tally::default();
        let mut b = self.head;
        while !b.is_null() {
            // SAFETY: walking our own nodes.
            unsafe {
                t.add(size_of_block(b));
                b = next(b);
            }
        }
        t
    }

    fn check(&self) -> Result<(usize, usize), &'static str> {
        let (mut n, mut bytes) = (0usize, 0usize);
        let mut prev: *mut u8 = ptr::null_mut();
        let mut b = self.head;
        let mut rover_seen = self.rover.is_null();
        while !b.is_null() {
            // SAFETY: walking our own nodes.
            unsafe {
                if ptr(b, PREV) != prev {
                    return Err("list prev link broken");
                }
                if P::ORDERED && !prev.is_null() && (prev as usize) >= (b as usize) {
                    return Err("free list not in address order");
                }
                if header(b) & FREE == 0 {
                    return Err("used block in the free list");
                }
                rover_seen |= b == self.rover;
                n += 1;
                bytes += size_of_block(b);
                prev = b;
                b = next(b);
            }
        }
        if !rover_seen {
            return Err("next-fit rover is not a free block");
        }
        Ok((n, bytes))
    }
}
