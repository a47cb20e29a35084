//! Runs one workload process under one allocator through a small C launcher (`launch.c`), which
//! measures it with wait4(): wall time, user+sys CPU time and the workload's peak RSS.

use crate::workloads::{fnv1a, ChecksumMode, Prepared};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Measurement {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub maxrss_kib: u64,
    /// `None` if the process exited 0 and a checksum was found.
    pub error: Option<String>,
    pub checksum: Option<String>,
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

/// The launcher's C source (see its header for why the runner does not start workloads itself).
pub const LAUNCH_C: &str = include_str!("launch.c");

/// Runs `p` with `preload` as `LD_PRELOAD` (none: the variable is removed) through `launcher`
/// (the compiled [`LAUNCH_C`]), which measures it. Output goes to files in `scratch`. The
/// launcher and the workload are killed after `timeout`.
pub fn run(
    p: &Prepared,
    preload: Option<&Path>,
    launcher: &Path,
    scratch: &Path,
    timeout: Duration,
) -> Result<Measurement> {
    std::fs::create_dir_all(scratch)?;
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    let report_path = scratch.join("report");
    let _ = std::fs::remove_file(&report_path);
    let mut cmd = Command::new(launcher);
    cmd.arg(&report_path)
        .arg(preload.map_or_else(Default::default, |l| l.as_os_str().to_owned()))
        .arg(&p.program)
        .args(&p.args)
        .env_remove("LD_PRELOAD")
        // Its own process group, so that a timeout kills the workload with the launcher.
        .process_group(0)
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

    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", launcher.display()))?;
    let pgid = child.id() as libc::pid_t;

    // Watchdog: kill the launcher's process group if it runs past the timeout.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
            // SAFETY: plain kill(2) of the process group of our own, not yet reaped, child.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            true
        } else {
            false
        }
    });
    let launched = child.wait().context("waiting for the launcher");
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    launched?;

    let stdout = std::fs::read(&out_path)?;
    let stderr = String::from_utf8_lossy(&std::fs::read(&err_path)?).into_owned();
    let report = std::fs::read_to_string(&report_path).unwrap_or_default();
    let fields: Vec<&str> = report.split_whitespace().collect();
    let (wall_s, cpu_s, maxrss_kib, status) = match fields[..] {
        [w, c, r, s] => (w.parse()?, c.parse()?, r.parse()?, s.parse()?),
        _ if timed_out => (timeout.as_secs_f64(), 0.0, 0, 0),
        _ => bail!(
            "the launcher wrote no report for {}: {}",
            p.name,
            tail(&stderr, 3)
        ),
    };
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
        cpu_s,
        maxrss_kib,
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

    fn launcher(dir: &Path) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        crate::workloads::compile_c("launch", LAUNCH_C, dir).unwrap()
    }

    /// A workload that runs `script` with `/bin/sh -c`.
    fn sh(script: &str) -> Prepared {
        Prepared {
            name: "sh",
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            stdin: None,
            env: vec![],
            checksum: ChecksumMode::Line,
        }
    }

    #[test]
    fn measures_a_real_process() {
        let p = sh("echo checksum 42; exit 0");
        let dir = std::env::temp_dir().join(format!("segfit-bench-test-{}", std::process::id()));
        let l = launcher(&dir);
        let m = run(&p, None, &l, &dir, Duration::from_secs(30)).unwrap();
        assert_eq!(m.error, None);
        assert_eq!(m.checksum.as_deref(), Some("42"));
        assert!(m.maxrss_kib > 0);
        let p = sh("echo oops >&2; exit 3");
        let m = run(&p, None, &l, &dir, Duration::from_secs(30)).unwrap();
        let e = m.error.unwrap();
        assert!(e.contains("exit status 3") && e.contains("oops"), "{e}");
        let p = sh("sleep 30");
        let m = run(&p, None, &l, &dir, Duration::from_secs(1)).unwrap();
        assert!(m.error.unwrap().contains("timed out"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_small_workload_reads_its_own_peak_rss_not_the_runners() {
        // Make this process's peak RSS 64 MiB; a process it starts directly would report at
        // least that (Linux keeps the high-water mark across exec).
        let big = vec![1u8; 64 << 20];
        assert_eq!(std::hint::black_box(&big)[12345], 1);
        let p = sh("echo checksum 1");
        let dir = std::env::temp_dir().join(format!("segfit-bench-rss-{}", std::process::id()));
        let l = launcher(&dir);
        let m = run(&p, None, &l, &dir, Duration::from_secs(30)).unwrap();
        assert_eq!(m.error, None);
        assert!(m.maxrss_kib < 16 << 10, "sh read as {} KiB", m.maxrss_kib);
        drop(big);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
