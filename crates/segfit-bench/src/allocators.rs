//! Allocator discovery: glibc (nothing preloaded), segfit (the repo's own
//! `libsegfit.so`, built on demand) and the Debian-packaged mimalloc,
//! jemalloc and tcmalloc, each used through `LD_PRELOAD`.

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const KNOWN: &[&str] = &["glibc", "segfit", "mimalloc", "jemalloc", "tcmalloc"];

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
    /// Try `cargo build --release -p segfit-malloc` first.
    pub build: bool,
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
            "mimalloc" => find_packaged("libmimalloc.so.2"),
            "jemalloc" => find_packaged("libjemalloc.so.2"),
            "tcmalloc" => find_packaged("libtcmalloc_minimal.so.4"),
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
                let pkg = match req {
                    "mimalloc" => "libmimalloc2.0",
                    "jemalloc" => "libjemalloc2",
                    _ => "libtcmalloc-minimal4",
                };
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
    fn glibc_always_resolves_and_unknown_is_error() {
        let root = Path::new("/nonexistent");
        let opts = SegfitOptions {
            repo_root: root,
            lib: None,
            build: false,
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
