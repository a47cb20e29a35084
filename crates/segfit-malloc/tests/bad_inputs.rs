//! CONTRACT.md's bad inputs, through `tests/c/bad.c`: each case runs in its own process with
//! libsegfit preloaded, and must die of SIGABRT with exactly one stderr line
//! `segfit: fatal: <op>(): <what> ptr=<the address the program printed>`, or (for the inputs
//! that must not abort) exit 0. The NULL+errno inputs (22-28) and the concurrency ones (31-35)
//! are covered by `contract.rs`.

mod common;
use common::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

enum Want {
    Abort(&'static str, &'static str),
    Exit0,
}
use Want::*;

/// (case, contract bad-input number, expected outcome)
const CASES: &[(u32, u32, Want)] = &[
    (1, 1, Abort("free", "double free")),
    (2, 2, Abort("free", "double free")),
    (
        3,
        3,
        Abort("free", "invalid pointer (double free or never allocated)"),
    ),
    (
        103,
        3,
        Abort("free", "invalid pointer (not allocated by segfit)"),
    ),
    (
        4,
        4,
        Abort(
            "malloc",
            "free block handed out twice or changed after free (double free or use after free)",
        ),
    ),
    (
        104,
        4,
        Abort(
            "malloc",
            "free block handed out twice or changed after free (double free or use after free)",
        ),
    ),
    (5, 5, Abort("free", "double free")),
    (105, 5, Exit0),
    (6, 6, Abort("free", "invalid pointer (unaligned)")),
    (
        7,
        7,
        Abort("free", "invalid pointer (interior or out of range)"),
    ),
    (
        8,
        8,
        Abort("free", "invalid pointer (interior of a large block)"),
    ),
    (
        9,
        9,
        Abort("free", "invalid pointer (not allocated by segfit)"),
    ),
    (
        109,
        9,
        Abort("free", "invalid pointer (not allocated by segfit)"),
    ),
    (
        10,
        10,
        Abort("free", "invalid pointer (not allocated by segfit)"),
    ),
    (
        11,
        11,
        Abort("free", "invalid pointer (not allocated by segfit)"),
    ),
    (
        111,
        11,
        Abort("free", "invalid pointer (not allocated by segfit)"),
    ),
    (
        211,
        11,
        Abort("free", "invalid pointer (not allocated by segfit)"),
    ),
    (
        12,
        12,
        Abort("realloc", "invalid pointer (not allocated by segfit)"),
    ),
    (112, 12, Abort("realloc", "invalid pointer (already freed)")),
    (
        13,
        13,
        Abort("malloc_usable_size", "invalid pointer (already freed)"),
    ),
    (
        113,
        13,
        Abort(
            "malloc_usable_size",
            "invalid pointer (interior or out of range)",
        ),
    ),
    (
        213,
        13,
        Abort("malloc_usable_size", "invalid pointer (unaligned)"),
    ),
    (
        313,
        13,
        Abort(
            "malloc_usable_size",
            "invalid pointer (not allocated by segfit)",
        ),
    ),
    (
        20,
        20,
        Abort(
            "free_sized",
            "size mismatch (sized deallocation with the wrong size or alignment)",
        ),
    ),
    (
        120,
        20,
        Abort(
            "free_sized",
            "size mismatch (sized deallocation with the wrong size or alignment)",
        ),
    ),
    (
        221,
        21,
        Abort(
            "free_aligned_sized",
            "size mismatch (sized deallocation with the wrong size or alignment)",
        ),
    ),
    (
        21,
        21,
        Abort(
            "free_aligned_sized",
            "alignment mismatch (sized deallocation with the wrong alignment)",
        ),
    ),
    (
        121,
        21,
        Abort(
            "free_aligned_sized",
            "alignment mismatch (sized deallocation with the wrong alignment)",
        ),
    ),
    (
        38,
        38,
        Abort("free", "invalid pointer (not allocated by segfit)"),
    ),
];

#[test]
fn bad_inputs_abort_with_one_line() {
    let exe = compile("bad.c", "bad", &link_segfit());
    let mut failed = Vec::new();
    let mut passed = std::collections::BTreeSet::new();
    for (case, number, want) in CASES {
        let mut cmd = preloaded(Command::new(&exe));
        cmd.arg(case.to_string());
        let o = run_with_timeout(cmd, Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&o.stdout).to_string();
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        let ok = match want {
            Exit0 => o.status.success(),
            Abort(op, what) => {
                let ptr = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("ptr="))
                    .unwrap_or("?");
                let expect = format!("segfit: fatal: {op}(): {what} ptr={ptr}\n");
                o.status.signal() == Some(libc_sigabrt()) && stderr == expect
            }
        };
        if ok {
            passed.insert(*number);
        } else {
            failed.push(format!(
                "case {case} (bad input {number}): {:?}\nstdout: {stdout}stderr: {stderr}",
                o.status
            ));
        }
    }
    eprintln!(
        "bad inputs: {} cases, contract inputs passed: {} {:?}",
        CASES.len(),
        passed.len(),
        passed
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn libc_sigabrt() -> i32 {
    6
}
