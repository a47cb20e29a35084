//! CONTRACT.md's checklist, through the C test program `tests/c/contract.c` run with libsegfit
//! preloaded (each case in its own process), plus the export list (`nm -D`) and linking with
//! `-lsegfit` and with `libsegfit.a`.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

#[test]
fn contract_statements() {
    let exe = compile("contract.c", "contract", &link_segfit());
    let list = Command::new(&exe)
        .arg("--list")
        .env("LD_PRELOAD", lib())
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    let mut failed = Vec::new();
    let mut covered = BTreeSet::new();
    let mut bad = BTreeSet::new();
    let mut cases = 0;
    for line in list.lines() {
        let mut it = line.split_whitespace();
        let name = it.next().unwrap();
        let covers: Vec<&str> = it.collect();
        let mut cmd = preloaded(Command::new(&exe));
        cmd.arg(name);
        let o = run_with_timeout(cmd, Duration::from_secs(120));
        let ok = o.status.success()
            && String::from_utf8_lossy(&o.stdout).contains(&format!("PASS {name}"));
        cases += 1;
        if ok {
            for c in covers {
                match c.strip_prefix('b') {
                    Some(b) => bad.insert(b.parse::<u32>().unwrap()),
                    None => covered.insert(c.parse::<u32>().unwrap()),
                };
            }
        } else {
            failed.push(format!(
                "{name}: {:?}\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    eprintln!("contract: bad inputs passed here: {} {:?}", bad.len(), bad);
    eprintln!(
        "contract: {cases} cases; statements passed: {} {:?}",
        covered.len(),
        covered
    );
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}

/// Statement 37: the exports.
#[test]
fn exports_the_allocation_functions() {
    if !have("nm") {
        eprintln!("skipped: nm (binutils) not installed");
        return;
    }
    let o = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib())
        .output()
        .unwrap();
    let syms = String::from_utf8(o.stdout).unwrap();
    let defined: BTreeSet<&str> = syms
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for s in [
        "malloc",
        "free",
        "calloc",
        "realloc",
        "aligned_alloc",
        "posix_memalign",
        "memalign",
        "valloc",
        "pvalloc",
        "malloc_usable_size",
        "reallocarray",
        "free_sized",
        "free_aligned_sized",
        "cfree",
        "malloc_trim",
        "segfit_collect",
        "segfit_stats_print",
        "segfit_stats_print_fd",
    ] {
        assert!(defined.contains(s), "{s} not exported: {defined:?}");
    }
}

/// The library is STATIC_TLS (initial-exec) unless built with the general-dynamic feature.
#[test]
fn initial_exec_tls_marks_static_tls() {
    if !have("readelf") {
        eprintln!("skipped: readelf (binutils) not installed");
        return;
    }
    let o = Command::new("readelf")
        .arg("-d")
        .arg(lib())
        .output()
        .unwrap();
    let dynamic = String::from_utf8(o.stdout).unwrap();
    assert!(dynamic.contains("STATIC_TLS"), "{dynamic}");
}

/// Linking: `-lsegfit` (no preload) and `libsegfit.a` both route malloc to segfit.
#[test]
fn links_dynamically_and_statically() {
    let dynamic = compile("linked.c", "linked_dynamic", &link_segfit());
    let o = run_with_timeout(Command::new(&dynamic), Duration::from_secs(30));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("segfit: stats:"));

    let a = static_lib().display().to_string();
    let stat = compile("linked.c", "linked_static", &[&a, "-ldl", "-lm"]);
    let o = run_with_timeout(Command::new(&stat), Duration::from_secs(30));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("segfit: stats:"));
    // Nothing of segfit's is loaded as a shared object in the static build.
    assert!(!String::from_utf8_lossy(&o.stdout).contains("libsegfit.so"));
}
