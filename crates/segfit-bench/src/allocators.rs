//! Allocator discovery: glibc (nothing preloaded), segfit (the repo's own
//! `libsegfit.so`, built on demand) and the Debian-packaged mimalloc,
//! jemalloc and tcmalloc, each used through `LD_PRELOAD`.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const KNOWN: &[&str] = &[
    "glibc",
    "segfit",
    "mimalloc",
    "jemalloc",
    "tcmalloc",
    "mimalloc3",
    "snmalloc",
];

const LIBDIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocator {
    pub name: String,
    /// Library to `LD_PRELOAD`; `None` means the system allocator.
    pub preload: Option<PathBuf>,
}

/// Options that affect how segfit's library is found.
pub struct SegfitOptions<'a> {
    pub repo_root: &'a Path,
    /// Explicit path to the library (skips building and searching).
    pub lib: Option<&'a Path>,
    /// Try `cargo build --release -p segfit-malloc` first (and build missing source-built peers).
    pub build: bool,
    /// Where the peers built from source (`crate::peers`) are kept.
    pub peer_dir: &'a Path,
}

/// The packaged peers: name, library file, Debian package.
const PACKAGED: &[(&str, &str, &str)] = &[
    ("mimalloc", "libmimalloc.so.2", "libmimalloc2.0"),
    ("jemalloc", "libjemalloc.so.2", "libjemalloc2"),
    (
        "tcmalloc",
        "libtcmalloc_minimal.so.4",
        "libtcmalloc-minimal4",
    ),
];

fn packaged(name: &str) -> Option<(&'static str, &'static str)> {
    PACKAGED
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, file, pkg)| (file, pkg))
}

/// The Debian packages to install for the requested allocators whose library `present` does not
/// find, and `sqlite3` when `want_sqlite` and it is not on `PATH` (`sqlite_present`), in request
/// order without repeats.
pub fn missing_packages(
    requested: &[String],
    present: impl Fn(&str) -> bool,
    want_sqlite: bool,
    sqlite_present: bool,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    for req in requested {
        if let Some((file, pkg)) = packaged(req.trim()) {
            if !present(file) && !out.contains(&pkg) {
                out.push(pkg);
            }
        }
    }
    if want_sqlite && !sqlite_present {
        out.push("sqlite3");
    }
    out
}

/// Whether a packaged library file is installed.
pub fn packaged_present(file: &str) -> bool {
    find_packaged(file).is_some()
}

/// The commands that install `pkgs` with apt-get: directly as root, else through `sudo -n` (never
/// a password prompt). `None` when neither is possible.
pub fn install_commands(pkgs: &[&str], root: bool, sudo: bool) -> Option<Vec<Vec<String>>> {
    if pkgs.is_empty() || !(root || sudo) {
        return None;
    }
    let prefix: Vec<String> = if root {
        vec![]
    } else {
        vec!["sudo".into(), "-n".into()]
    };
    let mut update = prefix.clone();
    update.extend(["apt-get", "update", "-qq"].map(String::from));
    let mut install = prefix;
    install.extend(["apt-get", "install", "-y", "-qq"].map(String::from));
    install.extend(pkgs.iter().map(|p| p.to_string()));
    Some(vec![update, install])
}

/// Installs the missing Debian packages (the peers, sqlite3) before a run, as the issue asks of a
/// fresh machine. Failures are warnings: what is still missing is then skipped with its own
/// warning, as before.
pub fn install_missing(pkgs: &[&str], warn: &mut Vec<String>) {
    if pkgs.is_empty() {
        return;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let sudo = crate::workloads::which("sudo").is_some();
    let Some(cmds) = install_commands(pkgs, root, sudo) else {
        warn.push(format!(
            "warning: cannot install {} (not root and no sudo); install them with apt-get",
            pkgs.join(" ")
        ));
        return;
    };
    eprintln!("installing Debian packages: {}", pkgs.join(" "));
    for cmd in cmds {
        let status = Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                warn.push(format!("warning: `{}` failed ({s})", cmd.join(" ")));
                return;
            }
            Err(e) => {
                warn.push(format!("warning: could not run `{}`: {e}", cmd.join(" ")));
                return;
            }
        }
    }
}

fn find_packaged(file: &str) -> Option<PathBuf> {
    LIBDIRS
        .iter()
        .map(|d| Path::new(d).join(file))
        .find(|p| p.is_file())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Whether the workspace has a package called `segfit-malloc`.
fn has_segfit_malloc(repo_root: &Path) -> bool {
    let out = Command::new(cargo())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(repo_root)
        .output();
    match out {
        Ok(o) if o.status.success() => {
            String::from_utf8_lossy(&o.stdout).contains("\"name\":\"segfit-malloc\"")
        }
        _ => false,
    }
}

fn segfit_candidates(repo_root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let t = PathBuf::from(t);
        let t = if t.is_relative() {
            repo_root.join(t)
        } else {
            t
        };
        dirs.push(t.join("release"));
    }
    dirs.push(repo_root.join("target").join("release"));
    let mut out = Vec::new();
    for d in dirs {
        for f in ["libsegfit.so", "libsegfit_malloc.so"] {
            out.push(d.join(f));
        }
    }
    out
}

fn find_segfit(opts: &SegfitOptions, warn: &mut Vec<String>) -> Option<PathBuf> {
    if let Some(lib) = opts.lib {
        if lib.is_file() {
            return Some(lib.to_path_buf());
        }
        warn.push(format!(
            "warning: skipping segfit: --segfit-lib {} does not exist",
            lib.display()
        ));
        return None;
    }
    if opts.build {
        if has_segfit_malloc(opts.repo_root) {
            eprintln!("building segfit-malloc: cargo build --release -p segfit-malloc");
            let status = Command::new(cargo())
                .args(["build", "--release", "-p", "segfit-malloc"])
                .current_dir(opts.repo_root)
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => warn.push(format!(
                    "warning: cargo build --release -p segfit-malloc failed ({s})"
                )),
                Err(e) => warn.push(format!("warning: could not run cargo: {e}")),
            }
        } else {
            warn.push(
                "warning: no segfit-malloc package in the workspace; not building libsegfit.so"
                    .into(),
            );
        }
    }
    let cands = segfit_candidates(opts.repo_root);
    match cands.iter().find(|p| p.is_file()) {
        Some(p) => Some(p.clone()),
        None => {
            let list: Vec<String> = cands.iter().map(|p| p.display().to_string()).collect();
            warn.push(format!(
                "warning: skipping segfit: library not found (looked for {})",
                list.join(", ")
            ));
            None
        }
    }
}

/// Resolves the requested allocator names (or `name=/path/lib.so` for any
/// other preloadable allocator). Missing libraries are skipped with a
/// warning pushed to `warn`; unknown names are an error.
pub fn resolve(
    requested: &[String],
    segfit: &SegfitOptions,
    warn: &mut Vec<String>,
) -> Result<Vec<Allocator>> {
    let mut out: Vec<Allocator> = Vec::new();
    for req in requested {
        let req = req.trim();
        if req.is_empty() || out.iter().any(|a| a.name == req) {
            continue;
        }
        if let Some((name, path)) = req.split_once('=') {
            let path = PathBuf::from(path);
            if path.is_file() {
                out.push(Allocator {
                    name: name.to_string(),
                    preload: Some(path),
                });
            } else {
                warn.push(format!(
                    "warning: skipping {name}: {} does not exist",
                    path.display()
                ));
            }
            continue;
        }
        let preload = match req {
            "glibc" => {
                out.push(Allocator {
                    name: "glibc".into(),
                    preload: None,
                });
                continue;
            }
            "segfit" => find_segfit(segfit, warn),
            "mimalloc" | "jemalloc" | "tcmalloc" => {
                packaged(req).and_then(|(f, _)| find_packaged(f))
            }
            "mimalloc3" | "snmalloc" => {
                let built = if segfit.build {
                    crate::peers::ensure(req, segfit.repo_root, segfit.peer_dir)
                } else {
                    let f = segfit
                        .peer_dir
                        .join(crate::peers::file_of(req).unwrap_or_default());
                    if f.is_file() {
                        Ok(f)
                    } else {
                        Err(anyhow::anyhow!("{} not built (--no-build)", f.display()))
                    }
                };
                match built {
                    Ok(p) => out.push(Allocator {
                        name: req.to_string(),
                        preload: Some(p),
                    }),
                    Err(e) => warn.push(format!("warning: skipping {req}: {e:#}")),
                }
                continue;
            }
            other => bail!(
                "unknown allocator {other:?}; known: {} (or name=/path/to/lib.so)",
                KNOWN.join(", ")
            ),
        };
        match preload {
            Some(p) => out.push(Allocator {
                name: req.to_string(),
                preload: Some(p),
            }),
            None if req == "segfit" => {} // warning already pushed
            None => {
                let pkg = packaged(req).map_or("", |(_, p)| p);
                warn.push(format!(
                    "warning: skipping {req}: library not found (apt-get install {pkg})"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_requested_packages_are_installed() {
        let req: Vec<String> = [
            "glibc", "segfit", "mimalloc", "tcmalloc", "mimalloc", "x=/l.so",
        ]
        .map(String::from)
        .to_vec();
        let none = |_: &str| false;
        assert_eq!(
            missing_packages(&req, none, true, false),
            ["libmimalloc2.0", "libtcmalloc-minimal4", "sqlite3"]
        );
        let only_tc = |f: &str| f != "libtcmalloc_minimal.so.4";
        assert_eq!(
            missing_packages(&req, only_tc, true, true),
            ["libtcmalloc-minimal4"]
        );
        assert!(missing_packages(&req, |_| true, false, false).is_empty());
    }

    #[test]
    fn install_runs_apt_get_as_root_or_through_sudo_without_a_prompt() {
        let root = install_commands(&["libjemalloc2"], true, false).unwrap();
        assert_eq!(root[0], ["apt-get", "update", "-qq"]);
        assert_eq!(root[1], ["apt-get", "install", "-y", "-qq", "libjemalloc2"]);
        let sudo = install_commands(&["a", "b"], false, true).unwrap();
        assert_eq!(
            sudo[1],
            ["sudo", "-n", "apt-get", "install", "-y", "-qq", "a", "b"]
        );
        assert!(install_commands(&["a"], false, false).is_none());
        assert!(install_commands(&[], true, true).is_none());
    }

    #[test]
    fn glibc_always_resolves_and_unknown_is_error() {
        let root = Path::new("/nonexistent");
        let opts = SegfitOptions {
            repo_root: root,
            lib: None,
            build: false,
            peer_dir: root,
        };
        let mut warn = Vec::new();
        let a = resolve(&["glibc".into(), "glibc".into()], &opts, &mut warn).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].preload, None);
        assert!(resolve(&["bogus".into()], &opts, &mut warn).is_err());
    }

    #[test]
    fn missing_segfit_is_skipped_with_warning() {
        let root = Path::new("/nonexistent");
        let opts = SegfitOptions {
            repo_root: root,
            lib: Some(Path::new("/nonexistent/libsegfit.so")),
            build: false,
            peer_dir: root,
        };
        let mut warn = Vec::new();
        let a = resolve(&["segfit".into()], &opts, &mut warn).unwrap();
        assert!(a.is_empty());
        assert!(
            warn.iter().any(|w| w.contains("skipping segfit")),
            "{warn:?}"
        );
    }
}
