//! What an exiting thread leaves: its cache is parked whole and adopted by the next thread that
//! starts (at most four are parked), `collect` tears parked caches down, and what is left after
//! that is a few empty spans per class on the central lists, which `collect` returns too; a
//! parked cache nobody adopts is torn down a second later by a thread that needs a new span.
//!
//! The tests count parked caches and spans of one class process-wide, so they run one at a time.

use segfit::alloc::{free, malloc};
use segfit::cache::{parked_count, release_parked};
use std::sync::{Arc, Barrier, Mutex};

/// A class no other test in this file allocates from the main thread.
const SIZE: usize = 20_000;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn spans() -> u64 {
    segfit::stats().by_size[segfit::size_class::class_of(SIZE)].spans
}

/// `n` threads at once, each holding one block of `SIZE` until all have one (so each takes a
/// span of its own), then freeing it and exiting.
fn exit_together(n: usize) {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                let p = malloc(SIZE);
                assert!(!p.is_null());
                b.wait();
                // SAFETY: allocated just above.
                unsafe { free(p) };
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn an_exited_threads_cache_is_adopted_whole_by_the_next_thread() {
    let _s = serial();
    segfit::collect(); // no parked cache, no kept span left by the test before
    let (cache, block) = std::thread::spawn(|| {
        let p = malloc(SIZE);
        assert!(!p.is_null());
        // SAFETY: allocated just above; it stays in this thread's bin.
        unsafe { free(p) };
        (segfit::tls::get() as usize, p as usize)
    })
    .join()
    .unwrap();
    assert_eq!(parked_count(), 1, "the exited thread's cache is parked");
    let (adopted, again) = std::thread::spawn(|| {
        let p = malloc(SIZE);
        let r = (segfit::tls::get() as usize, p as usize);
        // SAFETY: allocated just above.
        unsafe { free(p) };
        r
    })
    .join()
    .unwrap();
    assert_eq!(adopted, cache, "the next thread adopts the parked cache");
    assert_eq!(
        again, block,
        "with its bins: the block freed there comes back first"
    );
    release_parked(true);
    assert_eq!(parked_count(), 0);
}

#[test]
fn at_most_four_caches_are_parked_and_collect_tears_them_down() {
    let _s = serial();
    segfit::collect(); // no parked cache, no kept span left by the test before
    let before = spans();
    exit_together(8);
    assert_eq!(
        parked_count(),
        4,
        "four of the eight exited caches are parked"
    );
    // Even with parking turned off since: what is parked still goes.
    segfit::cache::set_max_parked(0);
    segfit::collect();
    segfit::cache::set_max_parked(4);
    assert_eq!(parked_count(), 0, "collect tears parked caches down");
    assert_eq!(spans(), before, "and returns the spans they owned");
}

/// Short-lived threads that give everything back leave a few empty spans per class on the
/// central list for the next threads (not one span per thread), and `collect` returns those to
/// the page heap.
#[test]
fn exited_threads_leave_few_empty_spans_and_collect_returns_them() {
    let _s = serial();
    segfit::collect(); // no parked cache, no kept span left by the test before
    let before = spans();
    for _ in 0..4 {
        exit_together(8);
    }
    release_parked(true);
    let left = spans() - before;
    assert!(
        (1..=4).contains(&left),
        "{left} empty spans kept for the class"
    );
    segfit::collect();
    assert_eq!(spans(), before, "collect returns the kept spans");
}

#[test]
fn a_parked_cache_nobody_adopts_goes_when_a_thread_needs_a_span_a_second_later() {
    let _s = serial();
    segfit::collect();
    // This thread gets its own cache now, so that it does not adopt the one parked below.
    // SAFETY: freeing what was just allocated.
    unsafe { free(malloc(16)) };
    std::thread::spawn(|| {
        // SAFETY: freeing what was just allocated.
        unsafe { free(malloc(SIZE)) };
    })
    .join()
    .unwrap();
    assert_eq!(parked_count(), 1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // This thread has no span of the class: its refill takes one.
    let p = malloc(SIZE);
    let left = parked_count();
    // SAFETY: allocated just above.
    unsafe { free(p) };
    segfit::collect();
    assert_eq!(left, 0, "the stale parked cache was torn down");
}
