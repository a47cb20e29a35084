//! In-process allocator benchmark for Rust programs: the same workloads with segfit, the system
//! allocator (glibc), mimalloc (v3), jemalloc and snmalloc as the `#[global_allocator]`, each run
//! as a fresh process (so peak RSS is the allocator's own), interleaved, median of several runs.
//!
//! Run: `cargo run --release --manifest-path crates/segfit-bench-rs/Cargo.toml [runs]`.
//!
//! The allocator is chosen per process from `SEGFIT_BENCH_ALLOC` by a small dispatching global
//! allocator: every allocator pays the same dispatch (one load and a predictable branch).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::Instant;

static SEGFIT: segfit::SegFit = segfit::SegFit;
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
static SNMALLOC: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;

const ALLOCATORS: [&str; 5] = ["system", "segfit", "mimalloc", "jemalloc", "snmalloc"];

struct Switch;
static CHOICE: AtomicU8 = AtomicU8::new(0xff);

#[inline(always)]
fn choice() -> u8 {
    let c = CHOICE.load(Ordering::Relaxed);
    if c != 0xff {
        return c;
    }
    choose()
}

#[cold]
fn choose() -> u8 {
    // SAFETY: getenv reads the environment without allocating; the name is NUL-terminated.
    let v = unsafe { libc::getenv(c"SEGFIT_BENCH_ALLOC".as_ptr()) };
    let c = if v.is_null() {
        0
    } else {
        // SAFETY: getenv returned a NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes();
        ALLOCATORS
            .iter()
            .position(|a| a.as_bytes() == s)
            .unwrap_or(0) as u8
    };
    CHOICE.store(c, Ordering::Relaxed);
    c
}

macro_rules! dispatch {
    ($method:ident($($arg:expr),*)) => {
        match choice() {
            1 => SEGFIT.$method($($arg),*),
            2 => MIMALLOC.$method($($arg),*),
            3 => JEMALLOC.$method($($arg),*),
            4 => SNMALLOC.$method($($arg),*),
            _ => System.$method($($arg),*),
        }
    };
}

// SAFETY: forwards every call to the one allocator chosen before the first allocation.
unsafe impl GlobalAlloc for Switch {
    #[inline(always)]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { dispatch!(alloc(l)) }
    }
    #[inline(always)]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded contract; `p` came from the same allocator.
        unsafe { dispatch!(dealloc(p, l)) }
    }
    #[inline(always)]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { dispatch!(alloc_zeroed(l)) }
    }
    #[inline(always)]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { dispatch!(realloc(p, l, n)) }
    }
}

#[global_allocator]
static GLOBAL: Switch = Switch;

enum Tree {
    Leaf,
    Node(Box<Tree>, Box<Tree>),
}

fn make(d: u32) -> Tree {
    if d == 0 {
        Tree::Leaf
    } else {
        Tree::Node(Box::new(make(d - 1)), Box::new(make(d - 1)))
    }
}

fn check(t: &Tree) -> u64 {
    match t {
        Tree::Leaf => 1,
        Tree::Node(a, b) => 1 + check(a) + check(b),
    }
}

/// Small-object churn: binary trees (16-byte boxes), a long-lived tree plus many short-lived ones.
fn binary_trees(threads: usize) -> u64 {
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(|| {
                let long = make(16);
                let mut sum = 0;
                for d in (4..=16).step_by(2) {
                    let iters = 1 << (16 - d + 4);
                    for _ in 0..iters {
                        sum += check(&black_box(make(d)));
                    }
                }
                sum + check(&long)
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).sum()
}

/// Strings and hash maps: inserts, updates, removals with keys of varying length.
fn strings_maps() -> u64 {
    let mut m: HashMap<String, Vec<u32>> = HashMap::new();
    let mut sum = 0u64;
    for i in 0..1_500_000u64 {
        let k = format!(
            "k{}-{}",
            i.wrapping_mul(2_654_435_761) % 100_000,
            "x".repeat((i % 17) as usize)
        );
        m.entry(k).or_default().push(i as u32);
        if i % 3 == 0 {
            let r = format!(
                "k{}-{}",
                (i / 3).wrapping_mul(40_503) % 100_000,
                "x".repeat((i % 17) as usize)
            );
            if let Some(v) = m.remove(&r) {
                sum += v.len() as u64;
            }
        }
    }
    sum + m.len() as u64
}

/// Cross-thread: two producers allocate messages, two consumers free them.
fn producer_consumer() -> u64 {
    let (tx, rx) = mpsc::sync_channel::<Vec<Box<[u8]>>>(64);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let producers: Vec<_> = (0..2)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for round in 0..3000usize {
                    let batch: Vec<Box<[u8]>> = (0..100)
                        .map(|i| vec![t as u8; 16 + (i * 53 + round * 7) % 1000].into_boxed_slice())
                        .collect();
                    tx.send(batch).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                loop {
                    let msg = rx.lock().unwrap().recv();
                    match msg {
                        Ok(batch) => n += batch.iter().map(|b| b.len() as u64).sum::<u64>(),
                        Err(_) => return n,
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    consumers.into_iter().map(|c| c.join().unwrap()).sum()
}

/// Growth by realloc: many vectors pushed to different lengths.
fn vec_growth() -> u64 {
    let mut sum = 0u64;
    for round in 0..40u64 {
        let mut vs: Vec<Vec<u64>> = (0..2000).map(|_| Vec::new()).collect();
        for i in 0..200_000u64 {
            let k = (i.wrapping_mul(0x9e37_79b9) ^ round) as usize % vs.len();
            vs[k].push(i);
        }
        sum += vs.iter().map(|v| v.len() as u64).sum::<u64>();
    }
    sum
}

const WORKLOADS: [&str; 6] = [
    "binary_trees",
    "binary_trees_2t",
    "strings_maps",
    "producer_consumer",
    "vec_growth",
    "fast_path",
];

/// The Rust fast path: a constant-layout alloc+free pair in a loop.
fn fast_path() -> u64 {
    let mut sum = 0u64;
    for i in 0..50_000_000u64 {
        let b = black_box(Box::new(i));
        sum = sum.wrapping_add(*b);
    }
    sum
}

fn child(workload: &str) {
    let t = Instant::now();
    let sum = match workload {
        "binary_trees" => binary_trees(1),
        "binary_trees_2t" => binary_trees(2),
        "strings_maps" => strings_maps(),
        "producer_consumer" => producer_consumer(),
        "vec_growth" => vec_growth(),
        "fast_path" => fast_path(),
        _ => panic!("unknown workload"),
    };
    let secs = t.elapsed().as_secs_f64();
    // The peak RSS of this process's own memory map. Not `ru_maxrss` from the parent's `wait4`:
    // Linux carries the parent's peak over `exec` into it, so every workload smaller than the
    // runner read as the runner's size (3.1 MiB: fast_path under every allocator).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    println!("{sum} {secs} {hwm_kib}");
}

fn run_child(alloc: &str, workload: &str) -> (u64, f64, u64) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .arg("--child")
        .arg(workload)
        .env("SEGFIT_BENCH_ALLOC", alloc)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{alloc}/{workload} failed: {}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let sum = it.next().unwrap().parse().unwrap();
    let secs = it.next().unwrap().parse().unwrap();
    let hwm_kib = it.next().unwrap().parse().unwrap();
    (sum, secs, hwm_kib)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2]);
        return;
    }
    let runs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut time = vec![vec![Vec::new(); ALLOCATORS.len()]; WORKLOADS.len()];
    let mut rss = vec![vec![Vec::new(); ALLOCATORS.len()]; WORKLOADS.len()];
    for run in 0..runs {
        for (w, workload) in WORKLOADS.iter().enumerate() {
            let mut sums = Vec::new();
            for (a, alloc) in ALLOCATORS.iter().enumerate() {
                let (sum, secs, maxrss) = run_child(alloc, workload);
                sums.push(sum);
                time[w][a].push(secs);
                rss[w][a].push(maxrss as f64);
            }
            assert!(
                sums.windows(2).all(|p| p[0] == p[1]),
                "{workload}: checksums differ: {sums:?}"
            );
            eprintln!("run {}/{runs} {workload} done", run + 1);
        }
    }
    println!("median of {runs} runs; time in seconds (ratio to system), peak RSS in MiB (ratio to system)\n");
    print!("| workload |");
    for a in ALLOCATORS {
        print!(" {a} time | {a} RSS |");
    }
    println!();
    println!("|---|{}", "---:|---:|".repeat(ALLOCATORS.len()));
    let mut geo_t = vec![0.0; ALLOCATORS.len()];
    let mut geo_r = vec![0.0; ALLOCATORS.len()];
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let t: Vec<f64> = (0..ALLOCATORS.len())
            .map(|a| median(&mut time[w][a]))
            .collect();
        let r: Vec<f64> = (0..ALLOCATORS.len())
            .map(|a| median(&mut rss[w][a]) / 1024.0)
            .collect();
        print!("| {workload} |");
        for a in 0..ALLOCATORS.len() {
            print!(
                " {:.3} ({:.2}x) | {:.1} ({:.2}x) |",
                t[a],
                t[a] / t[0],
                r[a],
                r[a] / r[0]
            );
            geo_t[a] += (t[a] / t[0]).ln();
            geo_r[a] += (r[a] / r[0]).ln();
        }
        println!();
    }
    print!("| geomean vs system |");
    for a in 0..ALLOCATORS.len() {
        print!(
            " {:.2}x | {:.2}x |",
            (geo_t[a] / WORKLOADS.len() as f64).exp(),
            (geo_r[a] / WORKLOADS.len() as f64).exp()
        );
    }
    println!();
}
