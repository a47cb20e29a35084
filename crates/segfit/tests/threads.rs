//! Multi-threaded laws: blocks allocated on one thread and freed on another keep their contents
//! and are reused (mapped memory stays bounded); thousands of short-lived threads leave no cache
//! behind; a thread whose first call is a free works.

use segfit::alloc::{free, malloc};
use std::sync::mpsc;

fn fill(p: *mut u8, size: usize, tag: u8) {
    // SAFETY: p holds size bytes.
    unsafe { std::ptr::write_bytes(p, tag, size) };
}

fn verify(p: *mut u8, size: usize, tag: u8) {
    for i in [0, size / 2, size - 1] {
        // SAFETY: p holds size bytes.
        assert_eq!(unsafe { *p.add(i) }, tag, "cross-thread block corrupted");
    }
}

struct Send(*mut u8, usize, u8);
// SAFETY: the pointer is handed over to exactly one other thread, which then owns the block.
unsafe impl std::marker::Send for Send {}

#[test]
fn cross_thread_frees_keep_contents_and_memory_bounded() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 40;
    const PER_ROUND: usize = 2_000;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..THREADS {
        let (tx, rx) = mpsc::channel::<Vec<Send>>();
        senders.push(tx);
        receivers.push(rx);
    }
    let mut handles = Vec::new();
    for (t, rx) in receivers.into_iter().enumerate() {
        let next = senders[(t + 1) % THREADS].clone();
        handles.push(std::thread::spawn(move || {
            let mut seed = 0x9e37_79b9u64 + t as u64;
            for _ in 0..ROUNDS {
                let mut batch = Vec::with_capacity(PER_ROUND);
                for _ in 0..PER_ROUND {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let size = 1 + (seed % 2048) as usize;
                    let tag = (seed >> 32) as u8;
                    let p = malloc(size);
                    assert!(!p.is_null());
                    fill(p, size, tag);
                    batch.push(Send(p, size, tag));
                }
                next.send(batch).unwrap();
                let theirs = rx.recv().unwrap();
                for Send(p, size, tag) in theirs {
                    verify(p, size, tag);
                    // SAFETY: the block was handed over to this thread.
                    unsafe { free(p) };
                }
            }
        }));
    }
    drop(senders);
    for h in handles {
        h.join().unwrap();
    }
    let s = segfit::stats();
    // Live data per round is at most THREADS * PER_ROUND * 2 KiB = 16 MiB; 40 rounds of churn
    // must reuse memory rather than grow with the number of rounds.
    assert!(
        s.heap_committed < 128 << 20,
        "heap grew to {} bytes",
        s.heap_committed
    );
}

#[test]
fn thread_churn_leaves_no_caches_and_bounded_memory() {
    let before = segfit::stats();
    for _ in 0..50 {
        let hs: Vec<_> = (0..40)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut v = Vec::new();
                    for k in 0..64 {
                        let p = malloc(16 + (i * 64 + k) % 3000);
                        assert!(!p.is_null());
                        v.push(p as usize);
                    }
                    for p in v {
                        // SAFETY: allocated above on this thread.
                        unsafe { free(p as *mut u8) };
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }
    let after = segfit::stats();
    assert!(
        after.threads.1 >= before.threads.1 + 2000,
        "each thread got a cache"
    );
    assert!(
        after.threads.0 <= before.threads.0 + 4,
        "exited threads left {} caches",
        after.threads.0
    );
    assert!(
        after.heap_committed - before.heap_committed.min(after.heap_committed) < 64 << 20,
        "2000 threads grew the heap to {}",
        after.heap_committed
    );
}

#[test]
fn a_thread_whose_first_call_is_free_works() {
    let p = malloc(100) as usize;
    std::thread::spawn(move || {
        // SAFETY: the block was allocated on the main thread and handed over.
        unsafe { free(p as *mut u8) };
        let q = malloc(100);
        assert!(!q.is_null());
        // SAFETY: allocated just above.
        unsafe { free(q) };
    })
    .join()
    .unwrap();
}

/// A block smaller than a cache line that another thread frees is never handed out by the freeing
/// thread (it goes back to its owner: no two threads' small objects share a line), while a block
/// of a line or more is reused right there, as tcmalloc does.
#[test]
fn small_remote_frees_go_home_and_line_sized_ones_are_reused_here() {
    const N: usize = 32;
    for (size, reused_here) in [(48usize, false), (512, true)] {
        let (tx, rx) = mpsc::channel::<Vec<usize>>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let owner = std::thread::spawn(move || {
            tx.send((0..N).map(|_| malloc(size) as usize).collect())
                .unwrap();
            // Stay alive (and own the span) while the other thread frees and allocates.
            done_rx.recv().unwrap();
        });
        let blocks = rx.recv().unwrap();
        let freer = std::thread::spawn(move || {
            // A fresh thread: its bin for the class starts empty.
            let first = malloc(size);
            // SAFETY: allocated just above.
            unsafe { free(first) };
            // SAFETY: allocated by the owner, handed over, freed once here.
            unsafe { free(blocks[0] as *mut u8) };
            let q = malloc(size);
            let hit = q as usize == blocks[0];
            // SAFETY: allocated just above.
            unsafe { free(q) };
            for &p in &blocks[1..] {
                // SAFETY: as above.
                unsafe { free(p as *mut u8) };
            }
            hit
        });
        assert_eq!(
            freer.join().unwrap(),
            reused_here,
            "size {size}: reused by the freeing thread"
        );
        done_tx.send(()).unwrap();
        owner.join().unwrap();
    }
}
