//! Integration test: runs the real runner in --quick mode on two workloads
//! under glibc and every packaged allocator that is installed, and checks
//! the CSV has one row per (workload, allocator) with agreeing checksums.

use std::path::Path;
use std::process::Command;

const ALLOCATORS: &[(&str, &str)] = &[
    ("mimalloc", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"),
    ("jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    (
        "tcmalloc",
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    ),
];

#[test]
fn quick_run_writes_consistent_csv() {
    let out = std::env::temp_dir().join(format!("segfit-bench-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut allocs = vec!["glibc"];
    allocs.extend(
        ALLOCATORS
            .iter()
            .filter(|(_, p)| Path::new(p).is_file())
            .map(|(n, _)| *n),
    );
    let cache = out.join("cache");
    let output = Command::new(env!("CARGO_BIN_EXE_segfit-bench"))
        .args([
            "--quick",
            "--only",
            "binary_trees,random_realloc",
            "--no-build",
        ])
        .arg("--allocators")
        .arg(allocs.join(","))
        .arg("--out")
        .arg(&out)
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .expect("runner starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "runner failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stdout.contains("Wall time"), "{stdout}");
    assert!(stdout.contains("geomean vs glibc"), "{stdout}");

    let csv = std::fs::read_to_string(out.join("bench.csv")).expect("bench.csv written");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (cw, ca, cs, cc, cr) = (
        col("workload"),
        col("allocator"),
        col("status"),
        col("checksum"),
        col("wall_s"),
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * allocs.len(), "{csv}");
    for w in ["binary_trees", "random_realloc"] {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|r| r[cw] == w).collect();
        let names: Vec<&str> = mine.iter().map(|r| r[ca]).collect();
        assert_eq!(names, allocs, "{csv}");
        for r in &mine {
            assert_eq!(r[cs], "ok", "{csv}");
            assert!(r[cr].parse::<f64>().unwrap() > 0.0, "{csv}");
            assert_eq!(r[cc], mine[0][cc], "checksums differ: {csv}");
            assert!(!r[cc].is_empty());
        }
    }
    for f in ["bench_runs.csv", "bench.json", "bench.md", "bench.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn unknown_workload_is_rejected() {
    let output = Command::new(env!("CARGO_BIN_EXE_segfit-bench"))
        .args([
            "--only",
            "no_such_workload",
            "--allocators",
            "glibc",
            "--no-build",
        ])
        .output()
        .expect("runner starts");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown workload"));
}

/// The peers built from source (mimalloc v3, snmalloc) build, preload and give glibc's checksum.
#[test]
fn source_built_peers_build_and_run() {
    let out = std::env::temp_dir().join(format!("segfit-bench-peers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_segfit-bench"))
        .args([
            "--quick",
            "--only",
            "binary_trees,aligned",
            "--allocators",
            "glibc,mimalloc3,snmalloc",
            "--strict",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--cache-dir")
        .arg(out.join("cache"))
        .output()
        .expect("runner starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stderr.contains("skipping"),
        "runner failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    for lib in ["libmimalloc3.so", "libsnmallocshim.so"] {
        assert!(
            out.join("cache/peers").join(lib).is_file(),
            "{lib} not built"
        );
    }
    let csv = std::fs::read_to_string(out.join("bench.csv")).expect("bench.csv written");
    assert_eq!(
        csv.lines().filter(|l| l.ends_with(",ok")).count(),
        6,
        "{csv}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
