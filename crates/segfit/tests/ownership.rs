//! Thread-owned spans: objects freed by other threads go back to their owner (through its inbox)
//! and are reused there; a blocked owner's inbox is emptied by threads that need memory;
//! objects of a thread that exits, even while other threads are still freeing them, all come back;
//! the statistics stay exact through both.
//!
//! One test function (run phases in order): the assertions read process-wide statistics, which
//! tests running in parallel would disturb.

use segfit::alloc::{free, malloc};
use segfit::size_class::class_of;
use std::collections::HashSet;
use std::sync::mpsc;

/// An object size no other code in this process allocates (Rust's runtime does not use 2.7 KiB
/// blocks), so its class's statistics are ours alone.
const SIZE: usize = 2700;

fn class_stats() -> segfit::stats::ClassStats {
    segfit::stats().by_size[class_of(SIZE)]
}

fn live(k: &segfit::stats::ClassStats) -> u64 {
    k.mallocs - k.frees
}

fn remote_frees_come_back_to_the_owner_and_are_reused_there() {
    const N: usize = 3000;
    let (to_owner, owner_rx) = mpsc::channel::<()>();
    let (to_main, main_rx) = mpsc::channel::<Vec<usize>>();
    let owner = std::thread::spawn(move || {
        let first: Vec<usize> = (0..N).map(|_| malloc(SIZE) as usize).collect();
        to_main.send(first).unwrap();
        // Wait while another thread frees them all.
        owner_rx.recv().unwrap();
        let again: Vec<usize> = (0..N).map(|_| malloc(SIZE) as usize).collect();
        to_main.send(again).unwrap();
        owner_rx.recv().unwrap();
    });
    let first = main_rx.recv().unwrap();
    let base = class_stats();
    let freer = {
        let ptrs = first.clone();
        std::thread::spawn(move || {
            for p in ptrs {
                // SAFETY: allocated by the owner thread, handed over, freed once.
                unsafe { free(p as *mut u8) };
            }
        })
    };
    freer.join().unwrap();
    // The freer has exited: its frees wait in the owner's inbox, or (once the owner had not
    // refilled for 2 ms with 256 objects waiting) the freer put them back on the owner's spans.
    // Exact statistics: every object still out of its span waits in the inbox.
    let k = class_stats();
    assert_eq!(live(&k), live(&base) - N as u64, "{k:?}");
    assert_eq!(
        k.out, k.cached,
        "objects waiting in the inbox count as cached: {k:?}"
    );
    to_owner.send(()).unwrap();
    let again = main_rx.recv().unwrap();
    let old: HashSet<usize> = first.into_iter().collect();
    let reused = again.iter().filter(|p| old.contains(p)).count();
    assert!(
        reused >= N * 9 / 10,
        "the owner should get its own objects back: {reused} of {N} reused"
    );
    assert!(
        class_stats().spans <= base.spans + 1,
        "no new spans needed: {:?} vs {base:?}",
        class_stats()
    );
    for p in again {
        // SAFETY: allocated by the owner thread, freed once here.
        unsafe { free(p as *mut u8) };
    }
    // This thread keeps its last partial batch of remote frees until `collect` hands it over.
    assert!(class_stats().cached > 0);
    segfit::collect();
    to_owner.send(()).unwrap();
    owner.join().unwrap();
}

fn a_stalled_owners_inbox_is_emptied_by_threads_that_need_memory() {
    if !segfit::owner::helping_enabled() {
        // No `membarrier` here: by design no thread empties another's inbox (see `owner.rs`).
        eprintln!("skipped: membarrier unavailable, so no thread helps a stalled owner");
        return;
    }
    const N: usize = 3000;
    let (to_owner, owner_rx) = mpsc::channel::<()>();
    let (to_main, main_rx) = mpsc::channel::<Vec<usize>>();
    let owner = std::thread::spawn(move || {
        let v: Vec<usize> = (0..N).map(|_| malloc(SIZE) as usize).collect();
        to_main.send(v).unwrap();
        // Blocked from now on, like a main thread waiting in `join`.
        owner_rx.recv().unwrap();
    });
    let v = main_rx.recv().unwrap();
    std::thread::spawn(move || {
        for p in v {
            // SAFETY: allocated by the owner thread, handed over, freed once.
            unsafe { free(p as *mut u8) };
        }
    })
    .join()
    .unwrap();
    let before = class_stats();
    assert_eq!(before.out, before.cached, "{before:?}");
    // If the freer did not empty the blocked owner's inbox already, another thread that needs
    // memory of the class does, when it takes a new span: the owner's spans, whose objects are
    // then all back, go to the central list and this thread uses them instead of new ones.
    let spans = std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut most = 0;
        for round in 0..40 {
            held.extend((0..N / 10).map(|_| malloc(SIZE) as usize));
            most = most.max(class_stats().spans);
            if round % 10 == 9 {
                for p in held.drain(..) {
                    // SAFETY: allocated just above by this thread.
                    unsafe { free(p as *mut u8) };
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        for p in held {
            // SAFETY: allocated above by this thread.
            unsafe { free(p as *mut u8) };
        }
        most
    })
    .join()
    .unwrap();
    let k = class_stats();
    assert!(
        k.cached < N as u64 / 10,
        "the stalled owner's inbox was emptied: {k:?}"
    );
    // Without the help the other thread would have needed `before.spans` new spans (twice the
    // count at the peak) and the owner's would all still be there now.
    assert!(
        spans < 2 * before.spans,
        "{spans} spans at the peak, {} before",
        before.spans
    );
    assert!(
        k.spans < before.spans / 2,
        "the owner's emptied spans were given back: {k:?}, {before:?}"
    );
    to_owner.send(()).unwrap();
    owner.join().unwrap();
}

fn objects_of_exiting_threads_all_come_back() {
    const N: usize = 500;
    // Each owner must give its spans back at exit while the freer is still freeing (a parked
    // cache would be adopted by the next round's owner instead).
    segfit::cache::set_max_parked(0);
    for round in 0..40 {
        let (tx, rx) = mpsc::channel::<Vec<usize>>();
        let (half_tx, half_rx) = mpsc::channel::<()>();
        let owner = std::thread::spawn(move || {
            let v: Vec<usize> = (0..N).map(|_| malloc(SIZE) as usize).collect();
            tx.send(v).unwrap();
            // Exit once half are freed: the rest are freed while this thread tears its cache down
            // or after (when its spans belong to the central lists).
            half_rx.recv().unwrap();
        });
        let v = rx.recv().unwrap();
        let freer = std::thread::spawn(move || {
            for (i, p) in v.into_iter().enumerate() {
                if i == N / 2 {
                    half_tx.send(()).unwrap();
                }
                // SAFETY: allocated by the owner thread, handed over, freed once.
                unsafe { free(p as *mut u8) };
            }
        });
        owner.join().unwrap();
        freer.join().unwrap();
        let k = class_stats();
        assert_eq!(live(&k), 0, "round {round}: {k:?}");
    }
    // Frees that reached an exiting owner's inbox after its last look are taken back by the next
    // thread that gets the same owner id.
    std::thread::spawn(|| {
        // SAFETY: freeing what was just allocated.
        unsafe { free(malloc(16)) };
    })
    .join()
    .unwrap();
    let k = class_stats();
    assert_eq!(
        k.out, 0,
        "every object is back in its span (none stranded): {k:?}"
    );
    assert_eq!(k.cached, 0, "{k:?}");
}

#[test]
fn ownership() {
    remote_frees_come_back_to_the_owner_and_are_reused_there();
    a_stalled_owners_inbox_is_emptied_by_threads_that_need_memory();
    objects_of_exiting_threads_all_come_back();
}
