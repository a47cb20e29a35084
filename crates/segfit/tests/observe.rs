//! Statistics are exact when threads are quiescent; snapshots describe every span; the OS-call
//! trace prints strace-like lines tagged with why. One phase-ordered test for the process-wide
//! figures, and a child process for the trace.

use segfit::alloc::{free, malloc, malloc_aligned};
use segfit::size_class::{class_of, size_of};
use segfit::snapshot::{snapshot_vec, SpanKind};
use std::process::Command;

fn sizes() -> Vec<usize> {
    let mut v: Vec<usize> = (0..3000).map(|i| 1 + (i * 7919) % 4096).collect();
    v.extend([40_000, 100_000, 1 << 20, 33 << 20]);
    v
}

fn usable(size: usize) -> u64 {
    if size <= 32 << 10 {
        size_of(class_of(size)) as u64
    } else {
        // Large and huge blocks are whole 8 KiB pages.
        size.div_ceil(8192) as u64 * 8192
    }
}

#[test]
fn stats_are_exact_when_threads_are_quiescent() {
    let before = segfit::stats();
    // Two threads allocate; the blocks are freed later by the main thread.
    let hs: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                sizes()
                    .into_iter()
                    .map(|s| malloc(s) as usize)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let blocks: Vec<usize> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let n = blocks.len() as u64;
    let bytes: u64 = 2 * sizes().iter().map(|&s| usable(s)).sum::<u64>();
    let mid = segfit::stats();
    assert_eq!(mid.mallocs - before.mallocs, n, "mallocs");
    assert_eq!(mid.heap_objects - before.heap_objects, n, "live objects");
    assert_eq!(mid.heap_alloc - before.heap_alloc, bytes, "live bytes");
    assert_eq!(mid.frees, before.frees, "no frees yet");
    let c = class_of(40);
    assert!(mid.by_size[c].mallocs > before.by_size[c].mallocs);

    // The snapshot sees the blocks.
    let spans = snapshot_vec();
    let large = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Large && s.requested == 100_000)
        .count();
    let huge = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Huge && s.requested == 33 << 20)
        .count();
    assert_eq!(large, 2, "two 100 KB blocks");
    assert_eq!(huge, 2, "two 33 MiB blocks");
    let small_in_use: u64 = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Small)
        .map(|s| s.in_use as u64)
        .sum();
    assert!(
        small_in_use >= 6000,
        "small objects out of their spans: {small_in_use}"
    );
    let arena_bytes: usize = spans
        .iter()
        .filter(|s| s.kind != SpanKind::Huge)
        .map(|s| s.bytes)
        .sum();
    assert_eq!(arena_bytes % (64 << 20), 0, "spans tile the arenas");
    assert!(spans
        .iter()
        .all(|s| s.committed <= s.bytes && s.in_use <= s.objects.max(1)));
    let mut json = String::new();
    segfit::snapshot::write_json(&spans, &mut json).unwrap();
    assert!(json.starts_with('[') && json.ends_with(']'));
    assert_eq!(json.matches("\"kind\"").count(), spans.len());

    for p in blocks {
        // SAFETY: allocated above, freed once.
        unsafe { free(p as *mut u8) };
    }
    let after = segfit::stats();
    assert_eq!(after.frees - before.frees, n, "frees");
    assert_eq!(after.heap_objects, before.heap_objects, "nothing live");
    assert_eq!(after.heap_alloc, before.heap_alloc, "no live bytes");
    assert_eq!(
        after.total_alloc - before.total_alloc,
        bytes - 2 * (usable(100_000) + usable(40_000) + usable(1 << 20) + usable(33 << 20))
            + 2 * (100_000 + 40_000 + (1 << 20) + (33 << 20)),
        "total_alloc counts large blocks at their requested size"
    );
    assert_eq!(
        after.heap_sys,
        after.heap_inuse + after.heap_idle,
        "Go's HeapSys = HeapInuse + HeapIdle"
    );
    let mut j = String::new();
    after.write_json(&mut j).unwrap();
    assert!(j.contains("\"mallocs\":") && j.contains("\"arena-reserve\":{\"calls\":"));
}

#[test]
fn trace_child() {
    if std::env::var_os("SEGFIT_TRACE_CHILD").is_none() {
        return;
    }
    segfit::os::set_trace(true);
    let p = malloc(40 << 20);
    // SAFETY: just allocated.
    unsafe { free(p) };
    let q = malloc_aligned(100, 16);
    // SAFETY: just allocated.
    unsafe { free(q) };
    segfit::collect();
}

#[test]
fn os_trace_prints_strace_lines_tagged_with_why() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["trace_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("SEGFIT_TRACE_CHILD", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let has = |pat: &str| {
        err.lines()
            .any(|l| l.starts_with("segfit: ") && l.contains(pat))
    };
    assert!(
        has("PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, -1, 0) = 0x")
            && has("[arena-reserve]"),
        "{err}"
    );
    assert!(has(", PROT_READ|PROT_WRITE) = 0  [commit]"), "{err}");
    assert!(
        has("[huge-map]") && has("munmap(0x") && has("[huge-unmap]"),
        "{err}"
    );
    assert!(has("MADV_DONTNEED) = 0  [purge]"), "{err}");
}
