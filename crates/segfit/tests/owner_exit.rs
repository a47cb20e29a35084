//! Threads that exit while other threads free their objects: a freer may read a span's owner just
//! before the owner gives its spans back and exits, and push to the owner's inbox after the owner
//! took it for the last time. The inbox is closed at exit, so such frees go to the central list
//! instead of waiting forever in an inbox nobody takes (found in review; this test stranded
//! objects within 150-750 rounds before the fix). Parking is off here: a parked cache keeps its
//! inbox open and the next thread adopts it, so almost no owner would retire at exit (a review
//! counted about 115 retirements in 24,000 exits, and the test passed with the bug put back).

use segfit::alloc::{free, malloc};
use segfit::size_class::class_of;

/// A size nothing else in this test process allocates through segfit.
const SIZE: usize = 72;

#[test]
fn frees_racing_an_exiting_owner_all_come_back() {
    segfit::cache::set_max_parked(0);
    let c = class_of(SIZE);
    for round in 0..1500 {
        let mut handles = Vec::new();
        for _ in 0..8 {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<usize>>(1);
            handles.push(std::thread::spawn(move || {
                let v: Vec<usize> = (0..2000).map(|_| malloc(SIZE) as usize).collect();
                tx.send(v).unwrap();
                // Exit at once, while the other thread frees.
            }));
            handles.push(std::thread::spawn(move || {
                for p in rx.recv().unwrap() {
                    // SAFETY: allocated by the sending thread, handed over, freed once.
                    unsafe { free(p as *mut u8) };
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        let k = segfit::stats().by_size[c];
        assert!(
            k.mallocs == k.frees && k.out == 0 && k.cached == 0,
            "round {round}: objects left out of their spans with no thread alive: {k:?}"
        );
    }
}
