//! Shared helpers of the integration tests: find the freshly built library, compile the C/C++
//! test programs, run commands with segfit preloaded (with a timeout).
//!
//! The library: `cargo test -p segfit-malloc` builds the crate's `cdylib` and `staticlib` for the
//! integration tests into the same `deps/` directory as the test executables
//! (`target/<profile>/deps/libsegfit.so` and `libsegfit.a`), so each test finds them next to
//! `std::env::current_exe()`; `SEGFIT_LIB` overrides the `.so` path (e.g. to test a release build).
//! Programs are compiled with `cc`/`c++` (or `$CC`/`$CXX`) into `CARGO_TARGET_TMPDIR`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Directory of the test executable (`target/<profile>/deps`).
pub fn deps_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `libsegfit.so` under test.
pub fn lib() -> PathBuf {
    if let Some(p) = std::env::var_os("SEGFIT_LIB") {
        return PathBuf::from(p);
    }
    let p = deps_dir().join("libsegfit.so");
    assert!(
        p.exists(),
        "{} not found: run through `cargo test -p segfit-malloc`",
        p.display()
    );
    p
}

/// The `libsegfit.a` under test.
pub fn static_lib() -> PathBuf {
    let p = deps_dir().join("libsegfit.a");
    assert!(p.exists(), "{} not found", p.display());
    p
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
