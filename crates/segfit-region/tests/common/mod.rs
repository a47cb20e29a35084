//! One model, one driver: the shadow model and the operation runner shared by
//! every allocator's tests (proptest and seeded loops alike).
//!
//! The model is a `BTreeMap` from block start to (end, id). Every allocation
//! is checked against it for overlap and alignment, filled with a pattern
//! derived from its id, and the pattern is verified on realloc and free.

#![allow(dead_code)]

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use segfit_region::{BestFit, Bump, FirstFit, NextFit, RegionAlloc, SegregatedFit};

/// An allocator under test.
pub trait Subject: RegionAlloc + Sized {
    fn fresh() -> Self;
    /// Free-list allocators: run `check_invariants`. Bump: nothing to check.
    fn invariants(&self) -> Result<(), &'static str>;
    /// Whether freed memory is reused in general (false for `Bump`).
    const REUSES: bool = true;
}

macro_rules! subject {
    ($t:ty) => {
        impl Subject for $t {
            fn fresh() -> Self {
                <$t>::new()
            }
            fn invariants(&self) -> Result<(), &'static str> {
                self.check_invariants()
            }
        }
    };
}
subject!(FirstFit);
subject!(NextFit);
subject!(BestFit);
subject!(SegregatedFit);

impl Subject for Bump {
    fn fresh() -> Self {
        Bump::new()
    }
    fn invariants(&self) -> Result<(), &'static str> {
        Ok(())
    }
    const REUSES: bool = false;
}

/// One step of a workload.
#[derive(Clone, Debug)]
pub enum Op {
    Alloc {
        size: usize,
        align_log: u32,
    },
    /// Free the live block at `index % live.len()`.
    Free {
        index: usize,
    },
    /// Resize the live block at `index % live.len()`.
    Realloc {
        index: usize,
        size: usize,
    },
}

/// Word-aligned backing memory that the allocators may claim.
pub struct Memory {
    buf: Vec<u64>,
}

impl Memory {
    pub fn new(bytes: usize) -> Self {
        Memory {
            buf: vec![0; bytes.div_ceil(8)],
        }
    }
    pub fn ptr(&mut self) -> *mut u8 {
        self.buf.as_mut_ptr().cast()
    }
    pub fn len(&self) -> usize {
        self.buf.len() * 8
    }
}

#[derive(Clone, Copy)]
struct Live {
    id: u64,
    ptr: NonNull<u8>,
    layout: Layout,
}

fn pattern(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ (i as u8).wrapping_mul(7)
}

fn fill(b: &Live) {
    for i in 0..b.layout.size() {
        // SAFETY: the block is live and `layout.size()` bytes long.
        unsafe { b.ptr.as_ptr().add(i).write(pattern(b.id, i)) };
    }
}

fn verify(b: &Live, len: usize) {
    for i in 0..len {
        // SAFETY: the block is live and at least `len` bytes long.
        let got = unsafe { b.ptr.as_ptr().add(i).read() };
        assert_eq!(
            got,
            pattern(b.id, i),
            "block {} corrupted at byte {i}",
            b.id
        );
    }
}

/// The shadow model plus the allocator under test.
pub struct Driver<A: Subject> {
    pub alloc: A,
    pub mem: Memory,
    live: Vec<Live>,
    model: BTreeMap<usize, (usize, u64)>,
    pub next_id: u64,
    pub failures: usize,
    pub ops: usize,
    check_every: usize,
}

impl<A: Subject> Driver<A> {
    /// A fresh allocator over `bytes` of memory, claimed in two adjacent
    /// halves so that claim merging is exercised too.
    pub fn new(bytes: usize) -> Self {
        let mut mem = Memory::new(bytes);
        let mut alloc = A::fresh();
        let half = (mem.len() / 2) & !4095;
        // SAFETY: `mem` lives in the driver as long as `alloc` and is used
        // for nothing else.
        unsafe {
            alloc.claim(mem.ptr(), half).unwrap();
            alloc.claim(mem.ptr().add(half), mem.len() - half).unwrap();
        }
        Driver {
            alloc,
            mem,
            live: Vec::new(),
            model: BTreeMap::new(),
            next_id: 0,
            failures: 0,
            ops: 0,
            check_every: 64,
        }
    }

    pub fn check_every(mut self, n: usize) -> Self {
        self.check_every = n.max(1);
        self
    }

    fn record(&mut self, b: Live) {
        let start = b.ptr.as_ptr() as usize;
        assert_eq!(
            start % b.layout.align(),
            0,
            "alignment {} not met",
            b.layout.align()
        );
        let end = start + b.layout.size();
        let base = self.mem.ptr() as usize;
        assert!(
            start >= base && end <= base + self.mem.len(),
            "block outside the region"
        );
        if b.layout.size() == 0 {
            // Zero-sized blocks may share addresses; nothing to overlap.
            self.live.push(b);
            return;
        }
        if let Some((&s, &(e, id))) = self.model.range(..end).next_back() {
            assert!(e <= start || s >= end, "block {} overlaps block {id}", b.id);
        }
        self.model.insert(start, (end, b.id));
        fill(&b);
        self.live.push(b);
    }

    fn forget(&mut self, b: &Live) {
        if b.layout.size() == 0 {
            return;
        }
        self.model
            .remove(&(b.ptr.as_ptr() as usize))
            .expect("block not in model");
    }

    pub fn step(&mut self, op: &Op) {
        self.ops += 1;
        match *op {
            Op::Alloc { size, align_log } => {
                let layout = Layout::from_size_align(size, 1 << align_log).unwrap();
                match self.alloc.allocate(layout) {
                    Some(ptr) => {
                        let id = self.next_id;
                        self.next_id += 1;
                        self.record(Live { id, ptr, layout });
                    }
                    None => self.failures += 1,
                }
            }
            Op::Free { index } if !self.live.is_empty() => {
                let b = self.live.swap_remove(index % self.live.len());
                verify(&b, b.layout.size());
                self.forget(&b);
                // SAFETY: `b` is live with this layout.
                unsafe { self.alloc.deallocate(b.ptr, b.layout) };
            }
            Op::Realloc { index, size } if !self.live.is_empty() => {
                let i = index % self.live.len();
                let b = self.live[i];
                verify(&b, b.layout.size());
                // SAFETY: `b` is live with this layout.
                match unsafe { self.alloc.reallocate(b.ptr, b.layout, size) } {
                    Some(ptr) => {
                        let moved = Live {
                            id: b.id,
                            ptr,
                            layout: Layout::from_size_align(size, b.layout.align()).unwrap(),
                        };
                        verify(&moved, b.layout.size().min(size));
                        self.forget(&b);
                        self.live.swap_remove(i);
                        let fresh = Live {
                            id: self.next_id,
                            ..moved
                        };
                        self.next_id += 1;
                        self.record(fresh);
                    }
                    None => {
                        self.failures += 1;
                        verify(&b, b.layout.size()); // old block intact
                    }
                }
            }
            _ => {}
        }
        if self.ops.is_multiple_of(self.check_every) {
            self.alloc.invariants().unwrap();
        }
    }

    /// Frees every live block (in random-ish order) and checks that the
    /// allocator is back to its initial state: for free-list types one free
    /// block spanning the whole region; for `Bump`, empty after `reset`.
    pub fn free_all_and_check(&mut self, bump_reset: impl FnOnce(&mut A)) {
        while let Some(b) = self.live.pop() {
            verify(&b, b.layout.size());
            self.forget(&b);
            // SAFETY: `b` is live with this layout.
            unsafe { self.alloc.deallocate(b.ptr, b.layout) };
        }
        self.alloc.invariants().unwrap();
        let s = self.alloc.stats();
        if A::REUSES {
            assert_eq!(s.in_use, 0, "{s:?}");
            assert_eq!(s.free_blocks, 1, "not coalesced back to one block: {s:?}");
            assert_eq!(s.largest_free, s.free, "{s:?}");
            assert_eq!(
                s.free + 3 * std::mem::size_of::<usize>(),
                s.claimed,
                "{s:?}"
            );
        } else {
            bump_reset(&mut self.alloc);
            let s = self.alloc.stats();
            assert_eq!(s.in_use, 0, "{s:?}");
            assert_eq!(s.free, s.claimed, "{s:?}");
        }
    }
}

/// A small deterministic PRNG (xorshift64*), so seeded runs need no crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Sizes: mostly 0..=512, some up to 4 KiB.
pub fn random_size(rng: &mut Rng) -> usize {
    if rng.below(8) == 0 {
        rng.below(4097) as usize
    } else {
        rng.below(513) as usize
    }
}

/// Alignments: mostly 1..=16, sometimes up to 4 KiB.
pub fn random_align_log(rng: &mut Rng) -> u32 {
    if rng.below(10) == 0 {
        rng.below(13) as u32
    } else {
        rng.below(5) as u32
    }
}

pub fn random_op(rng: &mut Rng) -> Op {
    match rng.below(10) {
        0..=4 => Op::Alloc {
            size: random_size(rng),
            align_log: random_align_log(rng),
        },
        5..=7 => Op::Free {
            index: rng.next() as usize,
        },
        _ => Op::Realloc {
            index: rng.next() as usize,
            size: random_size(rng),
        },
    }
}

/// Runs a seeded random workload of `n` ops over `bytes` of memory.
pub fn seeded_run<A: Subject>(
    seed: u64,
    n: usize,
    bytes: usize,
    reset: impl FnOnce(&mut A),
) -> Driver<A> {
    let mut rng = Rng::new(seed);
    let mut d = Driver::<A>::new(bytes);
    for _ in 0..n {
        let op = random_op(&mut rng);
        d.step(&op);
    }
    d.free_all_and_check(reset);
    d
}
