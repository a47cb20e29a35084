//! End to end: this test binary runs on segfit as its `#[global_allocator]` — the test harness,
//! collections, strings, formatting and threads all allocate through it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

#[global_allocator]
static GLOBAL: segfit::SegFit = segfit::SegFit;

#[test]
fn collections_and_strings_work_end_to_end() {
    let mut m: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..20_000u32 {
        m.entry(format!("key-{}", i % 1000)).or_default().push(i);
    }
    assert_eq!(m.len(), 1000);
    assert_eq!(m["key-7"].len(), 20);
    let mut b: BTreeMap<u64, String> = BTreeMap::new();
    for i in 0..50_000u64 {
        b.insert(i * 7919 % 100_003, "x".repeat((i % 300) as usize));
    }
    let total: usize = b.values().map(|s| s.len()).sum();
    assert!(total > 0);
    let mut big: Vec<u64> = Vec::new();
    for i in 0..5_000_000u64 {
        big.push(i);
    }
    assert_eq!(big.iter().sum::<u64>(), 5_000_000 * 4_999_999 / 2);
    let s = segfit::stats();
    assert!(
        s.heap_objects > 1000,
        "the heap really is segfit's: {} objects",
        s.heap_objects
    );
}

#[test]
fn threads_share_data_through_the_allocator() {
    let shared = Arc::new(Mutex::new(Vec::<String>::new()));
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for i in 0..10_000 {
                    let s = format!("{t}:{i}:{}", "y".repeat(i % 64));
                    shared.lock().unwrap().push(s);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let v = std::mem::take(&mut *shared.lock().unwrap());
    assert_eq!(v.len(), 40_000);
    // Freed on this thread, allocated on the four others.
    drop(v);
}

#[test]
fn large_alignments_and_zeroed_layouts() {
    use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
    for shift in 0..=22 {
        let align = 1usize << shift;
        for size in [1, align / 2 + 1, align, 3 * align] {
            let l = Layout::from_size_align(size.max(1), align).unwrap();
            // SAFETY: non-zero layout; freed with the same layout.
            unsafe {
                let p = alloc_zeroed(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                assert!(std::slice::from_raw_parts(p, l.size())
                    .iter()
                    .all(|&b| b == 0));
                p.write_bytes(0x5a, l.size());
                let q = realloc(p, l, l.size() * 2 + 100);
                assert_eq!(q as usize % align, 0, "realloc kept alignment {align}");
                assert!(std::slice::from_raw_parts(q, l.size())
                    .iter()
                    .all(|&b| b == 0x5a));
                dealloc(
                    q,
                    Layout::from_size_align(l.size() * 2 + 100, align).unwrap(),
                );
                let r = alloc(l);
                assert!(!r.is_null());
                dealloc(r, l);
            }
        }
    }
}

#[test]
fn impossible_layouts_return_null() {
    use std::alloc::{alloc, Layout};
    use std::hint::black_box;
    // black_box keeps the optimizer from eliding the allocation and assuming success.
    let l = Layout::from_size_align(isize::MAX as usize - (1 << 29) + 1, 1 << 29).unwrap();
    // SAFETY: a valid layout; a null result is allowed.
    assert!(black_box(unsafe { alloc(black_box(l)) }).is_null());
    let l = Layout::from_size_align(1 << 46, 16).unwrap();
    // SAFETY: as above.
    assert!(black_box(unsafe { alloc(black_box(l)) }).is_null());
}

#[test]
fn collect_returns_freed_pages() {
    let v: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 1 << 20]).collect();
    drop(v);
    // The scavenger's cap may already have released most of it; collect releases the rest.
    segfit::collect();
    let s = segfit::stats();
    assert!(
        s.heap_released >= 32 << 20,
        "only {} bytes released",
        s.heap_released
    );
}

/// Blocks that Rust's `dealloc` put back carry the free key like every other free block, so the
/// C entry points, which check it before handing a cached block out, reuse them without aborting
/// (a program may link the C library and use `SegFit` in one process).
#[test]
fn blocks_rust_freed_are_handed_out_by_the_checked_c_malloc() {
    use std::alloc::{GlobalAlloc, Layout};
    let l = Layout::from_size_align(48, 8).unwrap();
    std::thread::spawn(move || {
        // A fresh thread: its bins hold only what this test puts there.
        let ps: Vec<*mut u8> = (0..64)
            .map(|_| {
                // SAFETY: a non-zero layout.
                unsafe { GLOBAL.alloc(l) }
            })
            .collect();
        for &p in &ps {
            // SAFETY: allocated just above with `l`, freed once.
            unsafe { GLOBAL.dealloc(p, l) };
        }
        let qs: Vec<*mut u8> = (0..64).map(|_| segfit::alloc::malloc_c(48)).collect();
        assert!(
            qs.iter().all(|q| ps.contains(q)),
            "the bin hands back the blocks Rust freed"
        );
        for q in qs {
            // SAFETY: allocated just above, freed once.
            unsafe { segfit::alloc::free(q) };
        }
    })
    .join()
    .unwrap();
}
