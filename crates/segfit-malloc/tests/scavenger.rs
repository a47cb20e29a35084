//! `SEGFIT_SCAVENGER=1`: a program that frees its heap and goes idle gives the memory back to the
//! OS within the decay time, without calling the allocator again; without the variable it keeps
//! it (until its next allocator call or `malloc_trim`).

mod common;

use common::{compile, preloaded, run_with_timeout};
use std::process::Command;
use std::time::Duration;

fn run(scavenger: bool) -> (i64, i64) {
    let exe = compile("idle.c", "idle", &[] as &[&str]);
    let mut cmd = preloaded(Command::new(exe));
    if scavenger {
        cmd.env("SEGFIT_SCAVENGER", "1");
    }
    let o = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout).to_string();
    let v: Vec<i64> = s
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (v[0], v[1])
}

#[test]
fn idle_memory_goes_back_with_the_background_scavenger() {
    let (after, idle) = run(true);
    println!("with SEGFIT_SCAVENGER=1: RSS after free {after} KiB, after 2 s idle {idle} KiB");
    assert!(
        after - idle >= 16 * 1024,
        "only {} KiB went back",
        after - idle
    );
    let (after, idle) = run(false);
    println!("without: RSS after free {after} KiB, after 2 s idle {idle} KiB");
    assert!(
        after - idle < 4 * 1024,
        "without the scavenger nothing runs while idle"
    );
}
