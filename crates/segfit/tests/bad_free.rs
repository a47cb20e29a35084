//! Bad frees abort with one clear line, and never corrupt silently. Each scenario runs in a child
//! process (this same test binary, re-run with `SEGFIT_BAD=<scenario>`); the parent checks the
//! signal and the exact stderr line.

use segfit::alloc::{free, malloc, realloc, usable_size};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

/// Runs in the child: performs the scenario named by `SEGFIT_BAD`.
#[test]
fn child_entry() {
    let Ok(which) = std::env::var("SEGFIT_BAD") else {
        return;
    };
    // SAFETY: deliberately invalid frees; the allocator must abort before anything is corrupted.
    unsafe {
        match which.as_str() {
            "double_small" => {
                let p = malloc(40);
                free(p);
                free(p);
            }
            "double_interleaved" => {
                let p = malloc(40);
                let q = malloc(40);
                free(p);
                free(q);
                free(p);
            }
            "double_after_flush" => {
                let p = malloc(64);
                free(p);
                // Push enough same-class frees through this cache that `p` goes back to its span.
                let v: Vec<usize> = (0..10_000).map(|_| malloc(64) as usize).collect();
                for q in v {
                    free(q as *mut u8);
                }
                free(p);
            }
            "double_cross_thread" => {
                let p = malloc(300) as usize;
                free(p as *mut u8);
                std::thread::spawn(move || free(p as *mut u8))
                    .join()
                    .unwrap();
                // `p` sits in both threads' caches now. The other thread's exit returned its copy
                // to the span; when this thread's cache gives its copy back, the span's bitmap
                // says the object is not out: the double free is caught then.
                segfit::collect();
            }
            "double_large" => {
                let p = malloc(200_000);
                free(p);
                free(p);
            }
            "double_huge" => {
                let p = malloc(40 << 20);
                free(p);
                free(p);
            }
            "unaligned" => {
                let p = malloc(40);
                free(p.add(1));
            }
            "interior_small" => {
                let p = malloc(64);
                free(p.add(16));
            }
            "interior_large" => {
                let p = malloc(100_000);
                free(p.add(8192));
            }
            "wild_first_call" => free(0xDEAD_BEEF as *mut u8),
            "beyond_address_space" => free(0x0DEA_DBEE_F000_0000 as *mut u8),
            "stack" => {
                let x = 5u64;
                free(&x as *const u64 as *mut u8);
            }
            "realloc_freed" => {
                let p = malloc(48);
                free(p);
                realloc(p, 100, 16);
            }
            "usable_size_wild" => {
                let _ = malloc(8);
                usable_size(0x1000 as *mut u8);
            }
            other => panic!("unknown scenario {other}"),
        }
    }
    // Reaching here means the bad input was not caught.
    std::process::exit(3);
}

fn expect_abort(scenario: &str, message: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env("SEGFIT_BAD", scenario)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc_sigabrt()),
        "{scenario}: status {:?}, stderr: {stderr}",
        out.status
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("segfit: fatal: "))
        .unwrap_or_else(|| panic!("{scenario}: no fatal line in {stderr}"));
    assert!(
        line.starts_with(message),
        "{scenario}: got `{line}`, want `{message}…`"
    );
    assert!(
        line.contains(" ptr=0x"),
        "{scenario}: the line names the pointer: {line}"
    );
}

fn libc_sigabrt() -> i32 {
    6
}

#[test]
fn double_free_small_aborts() {
    expect_abort("double_small", "segfit: fatal: free(): double free ptr=");
}

#[test]
fn interleaved_double_free_aborts() {
    expect_abort(
        "double_interleaved",
        "segfit: fatal: free(): double free ptr=",
    );
}

#[test]
fn double_free_after_the_block_went_back_to_its_span_aborts() {
    expect_abort(
        "double_after_flush",
        "segfit: fatal: free(): double free ptr=",
    );
}

#[test]
fn double_free_from_another_thread_aborts() {
    expect_abort(
        "double_cross_thread",
        "segfit: fatal: free(): double free ptr=",
    );
}

#[test]
fn double_free_large_aborts() {
    expect_abort(
        "double_large",
        "segfit: fatal: free(): invalid pointer (double free or never allocated)",
    );
}

#[test]
fn double_free_huge_aborts() {
    expect_abort(
        "double_huge",
        "segfit: fatal: free(): invalid pointer (not allocated by segfit)",
    );
}

#[test]
fn unaligned_free_aborts() {
    expect_abort(
        "unaligned",
        "segfit: fatal: free(): invalid pointer (unaligned)",
    );
}

#[test]
fn interior_free_aborts() {
    expect_abort(
        "interior_small",
        "segfit: fatal: free(): invalid pointer (interior or out of range)",
    );
    expect_abort(
        "interior_large",
        "segfit: fatal: free(): invalid pointer (interior of a large block)",
    );
}

#[test]
fn wild_pointers_abort() {
    expect_abort(
        "wild_first_call",
        "segfit: fatal: free(): invalid pointer (not allocated by segfit) ptr=0xdeadbeef",
    );
    expect_abort(
        "beyond_address_space",
        "segfit: fatal: free(): invalid pointer (not allocated by segfit)",
    );
    expect_abort(
        "stack",
        "segfit: fatal: free(): invalid pointer (not allocated by segfit)",
    );
    expect_abort(
        "usable_size_wild",
        "segfit: fatal: malloc_usable_size(): invalid pointer (not allocated by segfit)",
    );
}

#[test]
fn realloc_of_a_freed_block_aborts() {
    expect_abort(
        "realloc_freed",
        "segfit: fatal: realloc(): invalid pointer (already freed)",
    );
}

#[test]
fn user_data_equal_to_the_free_key_is_not_a_double_free() {
    let p = malloc(64);
    // SAFETY: p is a live 64-byte block; word 1 is user data.
    unsafe {
        *(p as *mut usize).add(1) = segfit::cache::free_key();
        free(p);
        let q = malloc(64);
        *(q as *mut usize).add(1) = segfit::cache::free_key();
        free(q);
    }
}
