//! Prints each of segfit's windows on the heap, for the documentation (docs/observability.md):
//! the OS-call trace, the statistics (text and JSON) and a heap snapshot (JSON).
//!
//! `cargo run --release -p segfit --example observe`

use segfit::alloc::{free, malloc};

fn main() {
    eprintln!("== OS-call trace (stderr) ==");
    segfit::os::set_trace(true);
    let small: Vec<usize> = (0..1000).map(|i| malloc(16 + i % 200) as usize).collect();
    let large = malloc(300_000);
    let huge = malloc(40 << 20);
    // SAFETY: allocated above, freed once.
    unsafe {
        free(huge);
        free(large);
    }
    for p in small.iter().skip(100) {
        // SAFETY: allocated above, freed once.
        unsafe { free(*p as *mut u8) };
    }
    segfit::collect();
    segfit::os::set_trace(false);

    println!("== segfit::stats() ==\n{}", segfit::stats());
    let mut json = String::new();
    segfit::stats().write_json(&mut json).unwrap();
    println!("== Stats::write_json ==\n{json}\n");
    let spans = segfit::snapshot::snapshot_vec();
    let mut js = String::new();
    segfit::snapshot::write_json(&spans[..spans.len().min(6)], &mut js).unwrap();
    println!(
        "== snapshot::write_json (first 6 of {} spans) ==\n{js}",
        spans.len()
    );
}
