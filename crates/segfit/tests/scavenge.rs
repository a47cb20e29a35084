//! Giving memory back: RSS (read from /proc/self/statm) drops by most of a freed heap at the first
//! allocator call after the decay time (the cap follows the recent peak, so a heap that shrinks is
//! kept for reuse for about a second, no longer), at once on `collect()`, and within the decay
//! window when a small amount is left idle; a steady workload does not thrash (few `madvise`
//! calls).
//!
//! One test function, in phases: the figures are process-wide, so nothing may run beside it.

use segfit::alloc::{free, malloc};
use segfit::os::Why;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    s.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4096
}

fn purges() -> u64 {
    segfit::stats().os[Why::Purge as usize].calls
}

fn alloc_touched(total: usize, block: usize) -> Vec<usize> {
    (0..total / block)
        .map(|_| {
            let p = malloc(block);
            assert!(!p.is_null());
            // SAFETY: p holds `block` bytes.
            unsafe { std::ptr::write_bytes(p, 0x77, block) };
            p as usize
        })
        .collect()
}

fn free_all(v: Vec<usize>) {
    for p in v {
        // SAFETY: each p came from `alloc_touched`.
        unsafe { free(p as *mut u8) };
    }
}

#[test]
fn freed_memory_goes_back_to_the_os() {
    let base = rss();

    // 1. A big heap freed: the cap on free resident memory follows the peak in use of the last one
    //    to two decay windows (max(64 MiB, 2 * peak - in use), `ScavengePolicy`), so the heap may
    //    stay resident for reuse for a while; past the decay time (1 s) the next allocator call
    //    gives all but the cap back, without collect() or the background thread. (Until the
    //    scavenger followed the peak, it went back during the frees; that cap re-faulted most of
    //    the `large` benchmark's heap, BENCHMARKS.md.)
    let v = alloc_touched(256 * MIB, 256 << 10);
    let peak = rss();
    assert!(
        peak >= base + 240 * MIB,
        "the heap was touched: {} MiB",
        (peak - base) / MIB
    );
    free_all(v);
    let after_free = rss();
    std::thread::sleep(Duration::from_millis(1200));
    // Any page heap slow path applies the policy: here a large block freed.
    let p = malloc(1 << 20);
    assert!(!p.is_null());
    // SAFETY: p came from malloc.
    unsafe { free(p) };
    let after = rss();
    println!(
        "256 MiB heap: rss base {} MiB, peak {} MiB, after free {} MiB, 1.2 s later {} MiB",
        base / MIB,
        peak / MIB,
        after_free / MIB,
        after / MIB
    );
    assert!(
        after <= base + 72 * MIB,
        "1.2 s after freeing 256 MiB, RSS is still {} MiB above base",
        (after - base) / MIB
    );

    // 2. collect(): a small heap under the cap stays resident until collect releases it at once.
    let v = alloc_touched(6 * MIB, 64 << 10);
    free_all(v);
    let before_collect = rss();
    let released = segfit::collect();
    let after_collect = rss();
    println!(
        "collect released {} KiB; rss {} -> {} KiB",
        released / 1024,
        before_collect / 1024,
        after_collect / 1024
    );
    assert!(released >= 5 * MIB, "collect released {released} bytes");
    assert!(
        before_collect - after_collect >= 5 * MIB,
        "RSS dropped only {} KiB on collect",
        (before_collect - after_collect) / 1024
    );

    // 3. Decay: idle free memory goes back within about a second, without collect(), with the
    //    background scavenger running.
    assert!(segfit::scavenger::start(100));
    let v = alloc_touched(6 * MIB, 64 << 10);
    free_all(v);
    let idle_start = Instant::now();
    let resident = || segfit::stats().heap_idle - segfit::stats().heap_released;
    assert!(
        resident() >= 5 * MIB as u64,
        "the small heap stayed resident at first"
    );
    while resident() > 0 && idle_start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let waited = idle_start.elapsed();
    println!("idle free memory released after {} ms", waited.as_millis());
    assert_eq!(resident(), 0, "free memory still resident after {waited:?}");
    assert!(
        waited < Duration::from_millis(1600),
        "decay took {waited:?}"
    );

    // 4. A steady workload (the same 4 MiB taken and freed 2000 times) does not thrash.
    let p0 = purges();
    for _ in 0..2000 {
        let v = alloc_touched(4 * MIB, 128 << 10);
        free_all(v);
    }
    let calls = purges() - p0;
    println!("steady workload: {calls} madvise calls in 2000 rounds");
    assert!(calls <= 20, "{calls} madvise calls for a steady workload");
}
