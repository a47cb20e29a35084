//! Runs one workload process under one allocator and measures it with
//! wait4(): wall time, user+sys CPU time and the child's peak RSS.

use crate::workloads::{fnv1a, ChecksumMode, Prepared};
use anyhow::{Context, Result};
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Measurement {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub maxrss_kib: u64,
    /// `None` if the process exited 0 and a checksum was found.
    pub error: Option<String>,
    pub checksum: Option<String>,
}

fn tv_secs(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

fn describe_status(status: i32) -> Option<String> {
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (code != 0).then(|| format!("exit status {code}"))
    } else if libc::WIFSIGNALED(status) {
        Some(format!("killed by signal {}", libc::WTERMSIG(status)))
    } else {
        Some(format!("wait status {status:#x}"))
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join(" | ")
}

/// Extracts the checksum from a finished process's output.
pub fn extract_checksum(mode: ChecksumMode, stdout: &[u8], exit_ok: bool) -> Option<String> {
    match mode {
        ChecksumMode::Line => String::from_utf8_lossy(stdout)
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("checksum ").map(|c| c.trim().to_string())),
        ChecksumMode::StdoutHash => Some(format!("{:016x}", fnv1a(stdout))),
        ChecksumMode::ExitStatus => Some(if exit_ok { "exit0" } else { "exit!=0" }.to_string()),
    }
}

/// Runs `p` with `preload` as `LD_PRELOAD` (none: the variable is removed).
/// Output goes to files in `scratch`. The child is killed after `timeout`.
pub fn run(
    p: &Prepared,
    preload: Option<&Path>,
    scratch: &Path,
    timeout: Duration,
) -> Result<Measurement> {
    std::fs::create_dir_all(scratch)?;
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    let mut cmd = Command::new(&p.program);
    cmd.args(&p.args)
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        .stdin(match &p.stdin {
            Some(f) => {
                Stdio::from(File::open(f).with_context(|| format!("opening {}", f.display()))?)
            }
            None => Stdio::null(),
        });
    for (k, v) in &p.env {
        cmd.env(k, v);
    }
    match preload {
        Some(lib) => cmd.env("LD_PRELOAD", lib),
        None => cmd.env_remove("LD_PRELOAD"),
    };

    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", p.program.display()))?;
    let pid = child.id() as libc::pid_t;

    // Watchdog: kill the child if it runs past the timeout.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
            // SAFETY: plain kill(2) of our own, not yet reaped, child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            true
        } else {
            false
        }
    });

    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data and fully written by wait4.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waiting for our own child; pointers are valid for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            let _ = done_tx.send(());
            return Err(e).context("wait4");
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    drop(child); // already reaped by wait4; dropping does not wait again

    let stdout = std::fs::read(&out_path)?;
    let stderr = String::from_utf8_lossy(&std::fs::read(&err_path)?).into_owned();
    let mut error = describe_status(status);
    if timed_out {
        error = Some(format!("timed out after {} s", timeout.as_secs()));
    }
    let checksum = extract_checksum(p.checksum, &stdout, error.is_none());
    if error.is_none() && checksum.is_none() {
        error = Some("no checksum line in output".into());
    }
    if let Some(e) = &mut error {
        let t = tail(&stderr, 3);
        if !t.is_empty() {
            e.push_str(": ");
            e.push_str(&t);
        }
    }
    Ok(Measurement {
        wall_s,
        cpu_s: tv_secs(ru.ru_utime) + tv_secs(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss.max(0) as u64,
        error,
        checksum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_line_is_found() {
        let out = b"progress 1\nchecksum 00ff\n";
        assert_eq!(
            extract_checksum(ChecksumMode::Line, out, true).as_deref(),
            Some("00ff")
        );
        assert_eq!(
            extract_checksum(ChecksumMode::Line, b"nothing\n", true),
            None
        );
        assert_eq!(
            extract_checksum(ChecksumMode::ExitStatus, b"", true).as_deref(),
            Some("exit0")
        );
        let a = extract_checksum(ChecksumMode::StdoutHash, b"x", true);
        let b = extract_checksum(ChecksumMode::StdoutHash, b"y", true);
        assert_ne!(a, b);
    }

    #[test]
    fn measures_a_real_process() {
        let p = Prepared {
            name: "echo",
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo checksum 42; exit 0".into()],
            stdin: None,
            env: vec![],
            checksum: ChecksumMode::Line,
        };
        let dir = std::env::temp_dir().join(format!("segfit-bench-test-{}", std::process::id()));
        let m = run(&p, None, &dir, Duration::from_secs(30)).unwrap();
        assert_eq!(m.error, None);
        assert_eq!(m.checksum.as_deref(), Some("42"));
        assert!(m.maxrss_kib > 0);
        let p = Prepared {
            args: vec!["-c".into(), "echo oops >&2; exit 3".into()],
            ..p
        };
        let m = run(&p, None, &dir, Duration::from_secs(30)).unwrap();
        let e = m.error.unwrap();
        assert!(e.contains("exit status 3") && e.contains("oops"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
