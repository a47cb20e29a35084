//! Hand-built heap layouts that tell the placement policies apart.

mod common;

use std::alloc::Layout;
use std::ptr::NonNull;

use common::Memory;
use segfit_region::{BestFit, FirstFit, NextFit, RegionAlloc, SegregatedFit};

fn l(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

/// Allocates `sizes` in order (each followed by a small live guard block so
/// holes never merge), then frees the blocks at `holes`.
fn holes<A: RegionAlloc>(a: &mut A, sizes: &[usize], holes: &[usize]) -> Vec<NonNull<u8>> {
    let mut blocks = Vec::new();
    for &s in sizes {
        blocks.push(a.allocate(l(s)).unwrap());
        a.allocate(l(8)).unwrap(); // guard
    }
    for &i in holes {
        // SAFETY: live with that layout.
        unsafe { a.deallocate(blocks[i], l(sizes[i])) };
    }
    blocks
}

fn claim<A: RegionAlloc>(a: &mut A, mem: &mut Memory, len: usize) {
    // SAFETY: `mem` outlives the allocator in each test.
    unsafe { a.claim(mem.ptr(), len) }.unwrap();
}

#[test]
fn first_fit_takes_the_lowest_block_that_fits() {
    let mut mem = Memory::new(1 << 16);
    let mut a = FirstFit::new();
    claim(&mut a, &mut mem, 1 << 16);
    let b = holes(&mut a, &[64, 256, 128, 256], &[0, 1, 2, 3]);
    // 100 bytes: hole 0 (64) is too small, hole 1 (256) is the lowest fit.
    assert_eq!(a.allocate(l(100)), Some(b[1]));
    // 40 bytes: hole 0 is the lowest fit.
    assert_eq!(a.allocate(l(40)), Some(b[0]));
    a.check_invariants().unwrap();
}

#[test]
fn next_fit_resumes_after_the_block_it_last_used() {
    let mut mem = Memory::new(1 << 16);
    let mut a = NextFit::new();
    claim(&mut a, &mut mem, 1 << 16);
    let b = holes(&mut a, &[64, 64, 64], &[]);
    // Fill the rest of the heap, so the only free space will be our holes.
    let rest = a.stats().largest_free - 8;
    let top = a.allocate(l(rest)).unwrap();
    for &p in &b {
        // SAFETY: live with that layout.
        unsafe { a.deallocate(p, l(64)) };
    }
    // First use starts the rove at the lowest hole; each next allocation
    // resumes after it rather than rescanning from the bottom.
    let x = a.allocate(l(64)).unwrap();
    // SAFETY: live with that layout.
    unsafe { a.deallocate(x, l(64)) };
    // First fit would hand the same lowest hole back; next fit goes on.
    let y = a.allocate(l(64)).unwrap();
    assert_eq!(x, b[0]);
    assert_eq!(y, b[1], "resumes after the hole it used last");
    let z = a.allocate(l(64)).unwrap();
    assert!(y < z, "next fit moves forward through the heap");
    // After the last hole it wraps around to the lowest one.
    let w = a.allocate(l(64)).unwrap();
    assert!(w < z, "next fit wraps around to the start");
    let _ = top;
    a.check_invariants().unwrap();
}

#[test]
fn next_fit_skips_a_lower_hole_that_first_fit_would_take() {
    fn run<A: RegionAlloc>(mut a: A) -> (NonNull<u8>, NonNull<u8>) {
        let mut mem = Memory::new(1 << 16);
        claim(&mut a, &mut mem, 1 << 16);
        let b = holes(&mut a, &[64, 64], &[]);
        // SAFETY: live with that layout.
        unsafe { a.deallocate(b[0], l(64)) };
        // The last allocation was the guard after b[1]; the rover sits in
        // the free space above it, the hole b[0] is below.
        (b[0], a.allocate(l(64)).unwrap())
    }
    let (hole, got) = run(FirstFit::new());
    assert_eq!(got, hole, "first fit takes the low hole");
    let (hole, got) = run(NextFit::new());
    assert!(got > hole, "next fit continues where it stopped");
}

#[test]
fn best_fit_takes_the_smallest_block_that_fits() {
    let mut mem = Memory::new(1 << 16);
    let mut a = BestFit::new();
    claim(&mut a, &mut mem, 1 << 16);
    let b = holes(&mut a, &[512, 64, 128, 256], &[0, 1, 2, 3]);
    assert_eq!(
        a.allocate(l(100)),
        Some(b[2]),
        "128 is the smallest hole >= 100"
    );
    assert_eq!(
        a.allocate(l(60)),
        Some(b[1]),
        "64 is the smallest hole >= 60"
    );
    assert_eq!(
        a.allocate(l(200)),
        Some(b[3]),
        "256 is the smallest hole >= 200"
    );
    a.check_invariants().unwrap();
}

#[test]
fn best_fit_takes_the_smallest_fit_whatever_the_free_order() {
    // Best fit's list is LIFO, not address-ordered: whatever order the
    // holes were freed in, the smallest one that fits is taken.
    let sizes = [512, 64, 128, 256, 96];
    for order in [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 4, 0, 3, 1]] {
        let mut mem = Memory::new(1 << 16);
        let mut a = BestFit::new();
        claim(&mut a, &mut mem, 1 << 16);
        let b = holes(&mut a, &sizes, &order);
        assert_eq!(a.allocate(l(100)), Some(b[2]), "order {order:?}");
        assert_eq!(a.allocate(l(90)), Some(b[4]), "order {order:?}");
        assert_eq!(a.allocate(l(60)), Some(b[1]), "order {order:?}");
        assert_eq!(a.allocate(l(200)), Some(b[3]), "order {order:?}");
        a.check_invariants().unwrap();
    }
    // Ties: of two equally small fits either may be taken (here the one
    // freed last), never a larger block.
    let mut mem = Memory::new(1 << 16);
    let mut a = BestFit::new();
    claim(&mut a, &mut mem, 1 << 16);
    let b = holes(&mut a, &[128, 512, 128], &[0, 1, 2]);
    let got = a.allocate(l(100)).unwrap();
    assert!(got == b[0] || got == b[2]);
    a.check_invariants().unwrap();
}

#[test]
fn first_and_best_fit_differ_on_the_same_layout() {
    fn run<A: RegionAlloc>(mut a: A) -> usize {
        let mut mem = Memory::new(1 << 16);
        claim(&mut a, &mut mem, 1 << 16);
        let b = holes(&mut a, &[512, 64], &[0, 1]);
        let got = a.allocate(l(64)).unwrap();
        b.iter().position(|&p| p == got).unwrap()
    }
    assert_eq!(run(FirstFit::new()), 0);
    assert_eq!(run(BestFit::new()), 1);
}

#[test]
fn segregated_fit_search_takes_one_step_regardless_of_free_blocks() {
    let mut mem = Memory::new(4 << 20);
    let mut tlsf = SegregatedFit::new();
    let mut first = FirstFit::new();
    let mut mem2 = Memory::new(4 << 20);
    claim(&mut tlsf, &mut mem, 4 << 20);
    claim(&mut first, &mut mem2, 4 << 20);
    // 2000 holes of assorted sizes, all separated by live guards.
    let sizes: Vec<usize> = (0..2000).map(|i| 16 + (i * 37) % 600).collect();
    let all: Vec<usize> = (0..sizes.len()).collect();
    holes(&mut tlsf, &sizes, &all);
    holes(&mut first, &sizes, &all);
    assert!(tlsf.stats().free_blocks > 1000);
    let mut worst_tlsf = 0;
    let mut worst_first = 0;
    for i in 0..500 {
        let req = l(700 + i);
        let before = tlsf.stats().search_steps;
        tlsf.allocate(req).unwrap();
        worst_tlsf = worst_tlsf.max(tlsf.stats().search_steps - before);
        let before = first.stats().search_steps;
        first.allocate(req).unwrap();
        worst_first = worst_first.max(first.stats().search_steps - before);
    }
    assert_eq!(
        worst_tlsf, 1,
        "O(1): one free block examined per allocation"
    );
    assert!(
        worst_first > 1000,
        "first fit scans past every small hole ({worst_first})"
    );
    tlsf.check_invariants().unwrap();
}

#[test]
fn segregated_fit_rounding_waste_is_below_one_over_two_to_the_sl_bits() {
    let k = SegregatedFit::SL_BITS;
    let mut n = 1usize;
    while n < (1 << 40) {
        for s in [n, n + 1, n + n / 3, (n * 2).saturating_sub(1)] {
            let r = SegregatedFit::search_size(s).unwrap();
            assert!(r >= s, "rounding never shrinks: {s} -> {r}");
            assert!(r - s <= s >> k, "waste {} of {s} above 1/2^{k}", r - s);
            // Rounding is idempotent: r is a class boundary.
            assert_eq!(SegregatedFit::search_size(r), Some(r));
        }
        n = n * 3 / 2 + 1;
    }
    assert_eq!(SegregatedFit::search_size(usize::MAX), None);
}

#[test]
fn segregated_fit_skips_a_same_class_block_only_within_the_waste_bound() {
    let mut mem = Memory::new(1 << 16);
    let mut a = SegregatedFit::new();
    claim(&mut a, &mut mem, 1 << 16);
    // A 2096-byte hole (block size, header included), in the class
    // [2048, 2112). A 2060-byte block rounds up to 2112, past the hole, so the
    // O(1) search takes the big free block at the top instead: that is the
    // documented rounding waste, bounded by 1/32 of the request.
    let b = holes(&mut a, &[2096 - 8], &[0]);
    let p = a.allocate(l(2060 - 8)).unwrap();
    assert_ne!(p, b[0]);
    let r = SegregatedFit::search_size(2060).unwrap();
    assert!(r > 2096 && r - 2060 <= 2060 / 32, "r = {r}");
    // A request whose rounded size is the hole's class boundary takes it.
    assert_eq!(SegregatedFit::search_size(2048), Some(2048));
    assert_eq!(a.allocate(l(2048 - 8)), Some(b[0]));
    a.check_invariants().unwrap();
}

#[test]
fn segregated_fit_uses_a_same_class_block_before_reporting_out_of_memory() {
    let mut mem = Memory::new(1 << 14);
    let mut a = SegregatedFit::new();
    claim(&mut a, &mut mem, 1 << 14);
    let b = holes(&mut a, &[2096 - 8], &[0]);
    // Take the whole top block: the hole is the only free block left.
    let top = a.stats().largest_free;
    assert!(top > 2096);
    a.allocate(l(top - 8)).unwrap();
    assert_eq!(a.stats().free_blocks, 1);
    let before = a.stats().search_steps;
    assert_eq!(
        a.allocate(l(2060 - 8)),
        Some(b[0]),
        "fallback scan finds the only fit"
    );
    assert!(a.stats().search_steps > before);
    a.check_invariants().unwrap();
}

#[test]
fn reallocation_grows_and_shrinks_in_place_when_the_neighbour_is_free() {
    fn run<A: RegionAlloc>(mut a: A) {
        let mut mem = Memory::new(1 << 16);
        claim(&mut a, &mut mem, 1 << 16);
        let p = a.allocate(l(100)).unwrap();
        let blocks = a.stats().free_blocks;
        // SAFETY: `p` is live with the given layouts.
        unsafe {
            assert_eq!(
                a.reallocate(p, l(100), 4000),
                Some(p),
                "grow into the free successor"
            );
            assert_eq!(a.reallocate(p, l(4000), 50), Some(p), "shrink in place");
        }
        assert_eq!(
            a.stats().free_blocks,
            blocks,
            "the freed tail merged with its neighbour"
        );
        let q = a.allocate(l(64)).unwrap();
        // SAFETY: as above.
        unsafe {
            // `q` now sits right after `p`: growing must move.
            let moved = a.reallocate(p, l(50), 500).unwrap();
            assert_ne!(moved, p);
            a.deallocate(moved, l(500));
            a.deallocate(q, l(64));
        }
        let s = a.stats();
        assert_eq!(s.free_blocks, 1);
    }
    run(FirstFit::new());
    run(NextFit::new());
    run(BestFit::new());
    run(SegregatedFit::new());
}
