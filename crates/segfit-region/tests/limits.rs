//! Limits: out-of-memory, absurd layouts and bad claims return errors, never
//! panic; the lock wrapper returns null.

mod common;

use std::alloc::{GlobalAlloc, Layout};

use common::Memory;
use segfit_region::{
    BestFit, Bump, ClaimError, FirstFit, Locked, NextFit, RegionAlloc, SegregatedFit,
};

fn each(f: &mut dyn FnMut(&mut dyn RegionAlloc)) {
    f(&mut Bump::new());
    f(&mut FirstFit::new());
    f(&mut NextFit::new());
    f(&mut BestFit::new());
    f(&mut SegregatedFit::new());
}

#[test]
fn huge_layouts_return_none() {
    each(&mut |a| {
        let mut mem = Memory::new(1 << 16);
        // SAFETY: `mem` outlives `a`'s use in this closure.
        unsafe { a.claim(mem.ptr(), mem.len()) }.unwrap();
        let max = isize::MAX as usize;
        for (size, align) in [
            (max - (1 << 30) + 1, 1 << 30),
            (max - 8, 8),
            (max, 1),
            (1 << 20, 1 << 30),
            (8, 1 << 30),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            assert_eq!(a.allocate(layout), None, "size {size} align {align}");
        }
        let small = Layout::from_size_align(16, 8).unwrap();
        let p = a.allocate(small).unwrap();
        // SAFETY: `p` is live with `small`.
        unsafe {
            p.as_ptr().write(42);
            assert_eq!(a.reallocate(p, small, isize::MAX as usize), None);
            assert_eq!(a.reallocate(p, small, usize::MAX), None);
            assert_eq!(
                p.as_ptr().read(),
                42,
                "old block intact after a failed realloc"
            );
        }
    });
}

#[test]
fn out_of_memory_returns_none_never_panics() {
    each(&mut |a| {
        let mut mem = Memory::new(4096);
        // SAFETY: `mem` outlives `a`'s use in this closure.
        unsafe { a.claim(mem.ptr(), mem.len()) }.unwrap();
        let layout = Layout::from_size_align(100, 8).unwrap();
        let mut n = 0;
        while a.allocate(layout).is_some() {
            n += 1;
            assert!(n < 100);
        }
        assert!(
            n >= 30,
            "a 4 KiB heap holds at least 30 blocks of 100 bytes (got {n})"
        );
        // Smaller requests may still fit in the leftovers; none panics.
        while a.allocate(Layout::new::<u8>()).is_some() {}
        assert_eq!(a.allocate(layout), None);
    });
}

#[test]
fn allocators_with_no_memory_return_none() {
    each(&mut |a| {
        assert_eq!(a.allocate(Layout::new::<u64>()), None);
        assert_eq!(a.allocate(Layout::new::<()>()), None);
    });
}

#[test]
fn bad_claims_are_refused() {
    each(&mut |a| {
        let mut mem = Memory::new(4096);
        // SAFETY: too small or wrapping ranges are refused before any write.
        unsafe {
            assert_eq!(a.claim(mem.ptr(), 4), Err(ClaimError::TooSmall));
            assert_eq!(
                a.claim(usize::MAX as *mut u8, 16),
                Err(ClaimError::AddressOverflow)
            );
        }
    });
    for a in [
        &mut FirstFit::new() as &mut dyn RegionAlloc,
        &mut SegregatedFit::new(),
    ] {
        let mut mem = Memory::new(4096);
        // SAFETY: `mem` outlives `a`; the overlapping claim is refused.
        unsafe {
            a.claim(mem.ptr(), 2048).unwrap();
            assert_eq!(a.claim(mem.ptr().add(1024), 2048), Err(ClaimError::Overlap));
        }
    }
}

#[test]
fn disjoint_claims_stay_separate_and_adjacent_ones_merge() {
    let mut mem = Memory::new(1 << 14);
    let mut a = FirstFit::new();
    // SAFETY: `mem` outlives `a`; the three ranges are disjoint.
    unsafe {
        a.claim(mem.ptr(), 4096).unwrap();
        a.claim(mem.ptr().add(8192), 4096).unwrap();
        assert_eq!(a.stats().free_blocks, 2);
        a.claim(mem.ptr().add(12288), 4096).unwrap();
    }
    a.check_invariants().unwrap();
    assert_eq!(
        a.stats().free_blocks,
        2,
        "the third claim continued the second"
    );
    let p = a.allocate(Layout::from_size_align(6000, 8).unwrap());
    assert!(
        p.is_some(),
        "merged claims serve a request bigger than either"
    );
}

/// Checks the accounting identity of a free-list allocator's stats.
fn assert_stats_cover_claimed(a: &dyn FreeListCheck, regions: usize) {
    let s = a.stats_dyn();
    assert_eq!(
        s.in_use + s.free + regions * 3 * std::mem::size_of::<usize>(),
        s.claimed,
        "{s:?}"
    );
}

trait FreeListCheck {
    fn stats_dyn(&self) -> segfit_region::RegionStats;
}
impl<A: RegionAlloc> FreeListCheck for A {
    fn stats_dyn(&self) -> segfit_region::RegionStats {
        self.stats()
    }
}

#[test]
fn claims_at_any_byte_offset_align_payloads_and_merge_when_adjacent() {
    // (A claim ending mid-word is trimmed to a word, so one starting at
    // its unaligned end does not continue it.)
    fn run<A: RegionAlloc + Default>(check: fn(&A) -> Result<(), &'static str>) {
        for offset in 0..24 {
            for len in [4096, 4104, 4112, 4120] {
                let mut mem = Memory::new(1 << 14);
                let mut a = A::default();
                // SAFETY: `mem` outlives `a`; the two ranges are adjacent
                // and disjoint, inside `mem`.
                unsafe {
                    let base = mem.ptr().add(offset);
                    a.claim(base, len).unwrap();
                    a.claim(base.add(len), 4096).unwrap();
                }
                check(&a).unwrap();
                // Word-aligned ends: the second claim starts where the first
                // ended, so it continues it.
                let merged = (offset + len) % std::mem::size_of::<usize>() == 0;
                let regions = if merged { 1 } else { 2 };
                assert_eq!(a.stats().free_blocks, regions, "offset {offset}, len {len}");
                assert_stats_cover_claimed(&a, regions);
                let mut live = Vec::new();
                for (i, align) in [1, 8, 16, 32, 64, 16, 8, 256].into_iter().enumerate() {
                    let l = Layout::from_size_align(24 + 40 * i, align).unwrap();
                    let p = a.allocate(l).unwrap();
                    assert_eq!(p.as_ptr() as usize % align, 0, "align {align}");
                    live.push((p, l));
                }
                if merged {
                    let big = Layout::from_size_align(6000, 16).unwrap();
                    let p = a
                        .allocate(big)
                        .expect("merged claims serve a request bigger than either");
                    live.push((p, big));
                }
                check(&a).unwrap();
                assert_stats_cover_claimed(&a, regions);
                for (p, l) in live {
                    // SAFETY: live with `l`.
                    unsafe { a.deallocate(p, l) };
                }
                check(&a).unwrap();
                let s = a.stats();
                assert_eq!((s.free_blocks, s.in_use), (regions, 0), "{s:?}");
            }
        }
    }
    run::<SegregatedFit>(SegregatedFit::check_invariants);
    run::<FirstFit>(FirstFit::check_invariants);
    run::<BestFit>(BestFit::check_invariants);
}

#[test]
fn bump_frees_only_the_most_recent_block() {
    let mut mem = Memory::new(4096);
    let mut b = Bump::new();
    // SAFETY: `mem` outlives `b`.
    unsafe { b.claim(mem.ptr(), mem.len()) }.unwrap();
    let l = Layout::from_size_align(64, 8).unwrap();
    let x = b.allocate(l).unwrap();
    let y = b.allocate(l).unwrap();
    let used = b.stats().in_use;
    // SAFETY: live blocks with layout `l`.
    unsafe { b.deallocate(x, l) };
    assert_eq!(b.stats().in_use, used, "an older block is not freed");
    // SAFETY: as above.
    unsafe { b.deallocate(y, l) };
    assert_eq!(b.stats().in_use, used - 64, "the most recent one is");
    // SAFETY: `x` is now the most recent block: realloc grows it in place.
    assert_eq!(unsafe { b.reallocate(x, l, 1000) }, Some(x));
    b.reset();
    assert_eq!(b.stats().in_use, 0);
    assert_eq!(b.allocate(l), Some(x), "reset starts from the bottom again");
}

#[test]
fn bump_moves_to_the_next_chunk_when_one_is_full() {
    let mut m1 = Memory::new(1024);
    let mut m2 = Memory::new(1024);
    let mut b = Bump::new();
    // SAFETY: both outlive `b` and are disjoint.
    unsafe {
        b.claim(m1.ptr(), m1.len()).unwrap();
        b.claim(m2.ptr(), m2.len()).unwrap();
    }
    let l = Layout::from_size_align(600, 8).unwrap();
    let x = b.allocate(l).unwrap();
    let y = b.allocate(l).unwrap();
    assert!(x.as_ptr() >= m1.ptr() && x.as_ptr() < m1.ptr().wrapping_add(1024));
    assert!(y.as_ptr() >= m2.ptr() && y.as_ptr() < m2.ptr().wrapping_add(1024));
    assert_eq!(b.allocate(l), None);
}

#[test]
fn locked_global_alloc_returns_null_when_out_of_memory() {
    static HEAP: Locked<SegregatedFit> = Locked::new(SegregatedFit::new());
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 8192].into_boxed_slice());
    // SAFETY: leaked memory, ours forever.
    unsafe { HEAP.claim(mem.as_mut_ptr(), mem.len()) }.unwrap();
    let l = Layout::from_size_align(1000, 8).unwrap();
    let mut ptrs = Vec::new();
    loop {
        // SAFETY: non-zero size.
        let p = unsafe { HEAP.alloc(l) };
        if p.is_null() {
            break;
        }
        ptrs.push(p);
    }
    assert!(ptrs.len() >= 7);
    // SAFETY: huge layouts are refused with null.
    unsafe {
        assert!(HEAP
            .alloc(Layout::from_size_align(isize::MAX as usize - (1 << 30) + 1, 1 << 30).unwrap())
            .is_null());
        assert!(HEAP.realloc(ptrs[0], l, isize::MAX as usize).is_null());
        for p in ptrs {
            HEAP.dealloc(p, l);
        }
    }
    HEAP.lock().check_invariants().unwrap();
    assert_eq!(HEAP.lock().stats().free_blocks, 1);
}

#[test]
fn locked_is_shareable_between_threads() {
    let heap: &'static Locked<FirstFit> = Box::leak(Box::new(Locked::new(FirstFit::new())));
    let mem: &'static mut [u8] = Box::leak(vec![0u8; 1 << 20].into_boxed_slice());
    // SAFETY: leaked memory, ours forever.
    unsafe { heap.claim(mem.as_mut_ptr(), mem.len()) }.unwrap();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                let l = Layout::from_size_align(32 + t * 8, 8).unwrap();
                for _ in 0..2000 {
                    // SAFETY: non-zero size; freed with the same layout.
                    unsafe {
                        let p = heap.alloc(l);
                        assert!(!p.is_null());
                        p.write_bytes(t as u8, l.size());
                        heap.dealloc(p, l);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    heap.lock().check_invariants().unwrap();
    assert_eq!(heap.lock().stats().free_blocks, 1);
}

#[cfg(feature = "allocator-api2")]
#[test]
fn allocator_api2_vec_grows_through_locked() {
    let heap = Locked::<SegregatedFit>::new(SegregatedFit::new());
    let mut mem = Memory::new(1 << 16);
    // SAFETY: `mem` outlives `heap`.
    unsafe { heap.claim(mem.ptr(), mem.len()) }.unwrap();
    {
        let mut v = allocator_api2::vec::Vec::new_in(&heap);
        for i in 0..1000u32 {
            v.push(i);
        }
        assert_eq!(v.iter().sum::<u32>(), 999 * 1000 / 2);
    }
    heap.lock().check_invariants().unwrap();
    assert_eq!(heap.lock().stats().in_use, 0);
}
