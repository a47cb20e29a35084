//! Shared helpers of the integration tests: find the freshly built library, compile the C/C++
//! test programs, run commands with segfit preloaded (with a timeout).
//!
//! The library: the tests build it themselves (see [`lib_dir`]) into
//! `target/libsegfit-under-test/debug/`; `SEGFIT_LIB` overrides the `.so` path (e.g. to test a
//! release build).
//! Programs are compiled with `cc`/`c++` (or `$CC`/`$CXX`) into `CARGO_TARGET_TMPDIR`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Builds the library under test (once per test process) and returns the directory holding
/// `libsegfit.so` and `libsegfit.a`.
///
/// `cargo test` does not build a package's cdylib for its integration tests (only an rlib, which
/// this crate has not: with an rlib among its crate types rustc would not internalise the core's
/// statics under LTO). So the tests run `cargo build -p segfit-malloc` themselves, into a target
/// directory of their own (the outer `cargo test` holds the lock of the main one): the library
/// tested is always built from the current sources.
pub fn lib_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| build_lib(false)).clone()
}

/// Runs `cargo build -p segfit-malloc` (with `--release` if `release`) into the tests' own target
/// directory and returns the directory holding the built `libsegfit.so` and `libsegfit.a`.
pub fn build_lib(release: bool) -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = manifest.join("../../target/libsegfit-under-test");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-p", "segfit-malloc", "--target-dir"])
        .arg(&target);
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .current_dir(&manifest)
        .output()
        .expect("cannot run cargo");
    assert!(
        out.status.success(),
        "building libsegfit failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join(if release { "release" } else { "debug" })
}

/// The `libsegfit.so` under test (`SEGFIT_LIB` overrides it).
pub fn lib() -> PathBuf {
    if let Some(p) = std::env::var_os("SEGFIT_LIB") {
        return PathBuf::from(p);
    }
    lib_dir().join("libsegfit.so")
}

/// The `libsegfit.a` under test.
pub fn static_lib() -> PathBuf {
    lib_dir().join("libsegfit.a")
}

pub fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("segfit-malloc-tests");
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(name)
}

/// Whether `prog` can be run (found on PATH).
pub fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Compiles test program `source` (in tests/c) to `out` with the C or C++ compiler. Allocation
/// builtins are off so the compiler cannot fold or drop the calls under test.
pub fn compile<S: AsRef<std::ffi::OsStr>>(source: &str, out: &str, extra: &[S]) -> PathBuf {
    let cxx = source.ends_with(".cpp");
    let compiler = if cxx {
        std::env::var("CXX").unwrap_or_else(|_| "c++".into())
    } else {
        std::env::var("CC").unwrap_or_else(|_| "cc".into())
    };
    let exe = out_dir().join(out);
    let mut cmd = Command::new(&compiler);
    cmd.args([
        "-O1",
        "-g",
        "-pthread",
        "-fno-builtin",
        "-fno-allocation-dce",
        "-w",
    ])
    .arg("-o")
    .arg(&exe)
    .arg(src(source))
    .args(extra);
    if cxx {
        cmd.arg("-std=c++17");
    }
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        o.status.success(),
        "{compiler} {source} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    exe
}

/// Link arguments for `-L<dir> -lsegfit` with an rpath, against the library under test.
pub fn link_segfit() -> Vec<String> {
    let d = lib().parent().unwrap().display().to_string();
    vec![
        format!("-L{d}"),
        "-lsegfit".into(),
        format!("-Wl,-rpath,{d}"),
        "-ldl".into(),
    ]
}

/// Runs `cmd` to completion (killing it after `limit`), returning its output.
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || read_all(out));
    let t_err = std::thread::spawn(move || read_all(err));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let s = child.wait().unwrap();
            eprintln!("timeout after {limit:?}: {cmd:?}");
            break s;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

fn read_all(mut r: impl std::io::Read) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
    v
}

/// `cmd` with libsegfit preloaded.
pub fn preloaded(mut cmd: Command) -> Command {
    cmd.env("LD_PRELOAD", lib());
    cmd
}
