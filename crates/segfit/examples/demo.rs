//! The default job: run a workload on segfit as the global allocator and show what the heap did.
//!
//! `cargo run --release -p segfit --example demo` — builds maps, strings and trees on four threads,
//! hands blocks between threads, frees most of it, gives the memory back with `segfit::collect()`,
//! and prints segfit's statistics and OS calls at each step. `SEGFIT_DEMO_TRACE=1` also prints
//! every OS call as it happens (strace style).

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: segfit::SegFit = segfit::SegFit;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

fn step(name: &str, t0: Instant) {
    let s = segfit::stats();
    println!(
        "{:<34} {:>7.1} ms  in use {:>9} KiB  committed {:>9} KiB  released {:>8} KiB  RSS {:>8} KiB",
        name,
        t0.elapsed().as_secs_f64() * 1e3,
        s.heap_alloc / 1024,
        s.heap_committed / 1024,
        s.heap_released / 1024,
        rss_kib()
    );
}

#[derive(Debug)]
enum Tree {
    Leaf,
    Node(Box<Tree>, Box<Tree>),
}

fn tree(depth: u32) -> Tree {
    if depth == 0 {
        Tree::Leaf
    } else {
        Tree::Node(Box::new(tree(depth - 1)), Box::new(tree(depth - 1)))
    }
}

fn count(t: &Tree) -> u64 {
    match t {
        Tree::Leaf => 1,
        Tree::Node(a, b) => 1 + count(a) + count(b),
    }
}

fn main() {
    if std::env::var_os("SEGFIT_DEMO_TRACE").is_some() {
        segfit::os::set_trace(true);
    }
    let t0 = Instant::now();
    println!("segfit demo: a Go-style segregated-fit heap at work\n");
    step("start", t0);

    let mut words: HashMap<String, usize> = HashMap::new();
    for i in 0..200_000u64 {
        *words
            .entry(format!("word-{}", i.wrapping_mul(2_654_435_761) % 50_000))
            .or_default() += 1;
    }
    step("200k map updates (50k keys)", t0);

    let trees: Vec<Tree> = (0..8).map(|_| tree(16)).collect();
    let nodes: u64 = trees.iter().map(count).sum();
    step(&format!("8 binary trees ({nodes} nodes)"), t0);

    let (tx, rx) = mpsc::sync_channel::<Vec<Box<[u8]>>>(16);
    let producers: Vec<_> = (0..3)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for round in 0..200 {
                    let batch: Vec<Box<[u8]>> = (0..500)
                        .map(|i| vec![t as u8; 16 + (i * 37 + round) % 2000].into_boxed_slice())
                        .collect();
                    tx.send(batch).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumer = std::thread::spawn(move || rx.into_iter().map(|b| b.len()).sum::<usize>());
    for p in producers {
        p.join().unwrap();
    }
    let handed = consumer.join().unwrap();
    step(&format!("3 threads -> 1: {handed} blocks freed"), t0);

    let mut index: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for i in 0..20_000u64 {
        index.insert(i, vec![0u8; 64 << (i % 8)]);
    }
    step("20k buffers of 64 B..8 KiB", t0);

    drop(trees);
    drop(index);
    drop(words);
    step("freed almost everything", t0);
    let released = segfit::collect();
    step(
        &format!("segfit::collect() released {} KiB", released / 1024),
        t0,
    );

    println!("\n{}", segfit::stats());
}
