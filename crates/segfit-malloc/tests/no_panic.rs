//! No allocation entry point can reach Rust's panic machinery (CONTRACT.md statement 55): in a
//! release build of the library, a walk of the call graph (direct `call`/`jmp` targets in
//! `objdump -d`) from every exported allocation function finds no panic, unwrap or bounds-check
//! failure function. Misuse and corrupted metadata end in `segfit::fatal::fatal` instead (one line
//! and abort).
//!
//! And the release library carries no standard library: it needs only libc, and none of std's
//! unwinding or backtrace code is in it (each of those costs resident pages in every process the
//! library is preloaded into).

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::process::Command;

const ENTRIES: &[&str] = &[
    "malloc",
    "free",
    "calloc",
    "realloc",
    "reallocarray",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
    "free_sized",
    "free_aligned_sized",
    "cfree",
    "malloc_trim",
];

/// Function name -> names of the functions it calls or jumps to directly.
fn call_graph(lib: &PathBuf) -> BTreeMap<String, BTreeSet<String>> {
    let text = binutils("objdump", &["-d", "--no-show-raw-insn"], lib);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        // "0000000000014ea0 <free>:"
        if let Some(rest) = line.strip_suffix(">:") {
            if let Some((_, name)) = rest.split_once(" <") {
                current = name.to_string();
                graph.entry(current.clone()).or_default();
            }
            continue;
        }
        let is_branch = line.contains("\tcall ")
            || line.contains("\tjmp ")
            || line.contains("\tcall\t")
            || line.contains("\tjmp\t");
        if !is_branch || current.is_empty() {
            continue;
        }
        // "  14f9b:	jmp    25200 <_ZN6segfit5alloc10free_other...>"  (skip "<free+0x1c>")
        if let (Some(a), Some(b)) = (line.rfind('<'), line.rfind('>')) {
            let target = &line[a + 1..b];
            if !target.contains('+') && target != current {
                graph
                    .entry(current.clone())
                    .or_default()
                    .insert(target.to_string());
            }
        }
    }
    graph
}

fn is_panic(name: &str) -> bool {
    [
        "panic",
        "unwrap_failed",
        "expect_failed",
        "slice_index",
        "slice_end_index",
        "slice_start_index",
        "len_mismatch",
        "begin_unwind",
    ]
    .iter()
    .any(|p| name.contains(p))
}

#[test]
fn allocation_entry_points_cannot_reach_a_panic() {
    let graph = call_graph(&common::build_lib(true).join("libsegfit.so"));
    let mut seen: BTreeMap<String, String> = BTreeMap::new(); // function -> the caller it was reached from
    let mut queue: VecDeque<String> = VecDeque::new();
    for e in ENTRIES {
        assert!(graph.contains_key(*e), "{e} not found in the library");
        seen.insert(e.to_string(), String::new());
        queue.push_back(e.to_string());
    }
    while let Some(f) = queue.pop_front() {
        for g in graph.get(&f).into_iter().flatten() {
            if !seen.contains_key(g) {
                seen.insert(g.clone(), f.clone());
                queue.push_back(g.clone());
            }
        }
    }
    let bad: Vec<String> = seen
        .keys()
        .filter(|f| is_panic(f))
        .map(|f| {
            let mut chain = vec![f.clone()];
            let mut at = f.clone();
            while let Some(from) = seen.get(&at).filter(|s| !s.is_empty()) {
                chain.push(from.clone());
                at = from.clone();
            }
            chain.reverse();
            chain.join(" -> ")
        })
        .collect();
    println!(
        "{} functions reachable from the allocation entry points",
        seen.len()
    );
    assert!(
        bad.is_empty(),
        "panic machinery reachable:\n{}",
        bad.join("\n")
    );
}

#[test]
fn release_library_needs_only_libc_and_carries_no_std() {
    let lib = common::build_lib(true).join("libsegfit.so");
    let dynamic = binutils("readelf", &["-d", "-W"], &lib);
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(!needed.is_empty(), "no NEEDED entries found:\n{dynamic}");
    for n in &needed {
        assert!(
            n.starts_with("libc.so") || n.starts_with("ld-linux"),
            "libsegfit.so needs {n} (all: {needed:?})"
        );
    }
    let symbols = binutils("nm", &["-C"], &lib);
    let from_std: Vec<&str> = symbols
        .lines()
        .filter(|l| {
            l.contains(" std::")
                || l.contains("<std::")
                || l.contains("gimli")
                || l.contains("_Unwind_")
        })
        .take(5)
        .collect();
    assert!(
        from_std.is_empty(),
        "std code in libsegfit.so: {from_std:?}"
    );
}

/// The standard output of binutils tool `tool` run with `args` on `lib`.
fn binutils(tool: &str, args: &[&str], lib: &PathBuf) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(lib)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (binutils): {e}"));
    assert!(out.status.success(), "{tool} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
