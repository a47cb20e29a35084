//! Randomized cross-thread stress: threads allocate blocks of random sizes, fill them with a
//! pattern naming the block, and hand random batches to random other threads, which check the
//! pattern and free them; threads pause now and then for longer than the stalled-owner threshold
//! (so others empty their inboxes for them) and some exit and are replaced while their blocks are
//! still in flight. At the end every block was checked exactly once and the heap holds none of
//! them (statistics exact once the threads are gone).

use segfit::alloc::{free, malloc};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const THREADS: usize = 4;
const RUN: Duration = Duration::from_millis(1500);

/// A block in flight: address, size, and the tag its bytes were filled with.
type Block = (usize, usize, u8);

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn check_and_free((p, size, tag): Block) {
    // SAFETY: the block was allocated with `size` bytes by some thread and handed to us alone.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
    assert!(
        bytes.iter().all(|&b| b == tag),
        "block {p:#x} ({size} B) corrupted"
    );
    // SAFETY: as above; freed exactly once, here.
    unsafe { free(p as *mut u8) };
}

fn worker(
    me: usize,
    seed: u64,
    inbox: Receiver<Vec<Block>>,
    peers: Arc<Mutex<Vec<Sender<Vec<Block>>>>>,
    deadline: Instant,
    checked: Arc<Mutex<u64>>,
    done: Arc<Barrier>,
) -> u64 {
    let mut rng = Rng(seed);
    let mut made = 0u64;
    let mut mine = 0u64;
    while Instant::now() < deadline {
        for batch in inbox.try_iter() {
            mine += batch.len() as u64;
            batch.into_iter().for_each(check_and_free);
        }
        let n = 1 + rng.next() as usize % 64;
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let size = 1 + (rng.next() as usize % 3000);
            let tag = rng.next() as u8;
            let p = malloc(size);
            assert!(!p.is_null());
            // SAFETY: fresh block of `size` bytes.
            unsafe { std::ptr::write_bytes(p, tag, size) };
            batch.push((p as usize, size, tag));
        }
        made += n as u64;
        let to = rng.next() as usize % THREADS;
        if to == me {
            mine += batch.len() as u64;
            batch.into_iter().for_each(check_and_free);
        } else {
            let tx = peers.lock().unwrap()[to].clone();
            tx.send(batch)
                .expect("peers drain their channels before they exit");
        }
        if rng.next().is_multiple_of(200) {
            // Stall: others keep freeing into this thread's spans meanwhile.
            std::thread::sleep(Duration::from_millis(4));
        }
    }
    // Drain what is still addressed to us once every thread has stopped sending.
    done.wait();
    for batch in inbox.try_iter() {
        mine += batch.len() as u64;
        batch.into_iter().for_each(check_and_free);
    }
    *checked.lock().unwrap() += mine;
    made
}

#[test]
fn blocks_survive_random_cross_thread_traffic_and_all_come_back() {
    let before = segfit::stats().heap_objects;
    let checked = Arc::new(Mutex::new(0u64));
    let mut made = 0u64;
    // Three generations of workers: each generation's blocks are still in flight to the next
    // while its threads exit.
    for generation in 0..3u64 {
        let deadline = Instant::now() + RUN / 3;
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| channel()).unzip();
        let peers = Arc::new(Mutex::new(txs));
        let done = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(me, rx)| {
                let peers = peers.clone();
                let checked = checked.clone();
                let done = done.clone();
                let seed = generation * 1000 + me as u64 + 1;
                std::thread::spawn(move || worker(me, seed, rx, peers, deadline, checked, done))
            })
            .collect();
        drop(peers);
        for h in handles {
            made += h.join().unwrap();
        }
    }
    assert!(made > 10_000, "too little traffic: {made} blocks");
    assert_eq!(
        *checked.lock().unwrap(),
        made,
        "every block checked and freed once"
    );
    let after = segfit::stats().heap_objects;
    assert_eq!(after, before, "no block left live after all threads exited");
}
