//! The newest peers, built from source: mimalloc v3 and snmalloc as `LD_PRELOAD` libraries.
//!
//! Debian 12 packages mimalloc 2.0.9 (2023); the `mimalloc` and `snmalloc-rs` crates of the Rust
//! benchmark (`crates/segfit-bench-rs`) bundle mimalloc v3 and a current snmalloc. The runner finds
//! those crates' sources through `cargo metadata` on that manifest (which downloads them if
//! needed) and compiles each into a preloadable library with the flags of its own release build
//! (mimalloc: `src/static.c`, `MI_MALLOC_OVERRIDE`, initial-exec TLS; snmalloc: the
//! `snmallocshim` target of its CMakeLists: `override/malloc.cc` and `new.cc`, C++20, `-mcx16`).
//! The libraries are cached in `<cache dir>/peers/`.

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The peers built here: allocator name, library file name.
pub const BUILT: &[(&str, &str)] = &[
    ("mimalloc3", "libmimalloc3.so"),
    ("snmalloc", "libsnmallocshim.so"),
];

/// The library file of built peer `name`, if it is one.
pub fn file_of(name: &str) -> Option<&'static str> {
    BUILT.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
}

/// The directory of the registry package whose name is `pkg` in `cargo metadata` output (the
/// directory of its `manifest_path`).
pub fn package_dir(metadata: &str, pkg: &str) -> Option<PathBuf> {
    let needle = format!("/{pkg}-");
    metadata
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|path| {
            path.rsplit_once('/').is_some_and(|(dir, file)| {
                file == "Cargo.toml"
                    && dir
                        .rfind(&needle)
                        .is_some_and(|i| !dir[i + needle.len()..].contains('/'))
            })
        })
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// The compiler command that builds peer `name` from its crate directory `src` into `out`.
pub fn build_command(name: &str, src: &Path, out: &Path) -> Result<Command> {
    let mut cmd;
    match name {
        "mimalloc3" => {
            let root = src.join("c_src/mimalloc/v3");
            cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
            cmd.args([
                "-O3",
                "-DNDEBUG",
                "-fPIC",
                "-shared",
                "-fvisibility=hidden",
                "-ftls-model=initial-exec",
                "-DMI_MALLOC_OVERRIDE",
            ])
            .arg(format!("-I{}", root.join("include").display()))
            .arg(root.join("src/static.c"))
            .args(["-pthread", "-o"])
            .arg(out);
        }
        "snmalloc" => {
            let root = src.join("upstream/src");
            cmd = Command::new(std::env::var("CXX").unwrap_or_else(|_| "c++".into()));
            cmd.args([
                "-std=c++20",
                "-O3",
                "-DNDEBUG",
                "-fPIC",
                "-shared",
                "-mcx16",
                "-mprfchw",
                "-fomit-frame-pointer",
                "-ffunction-sections",
                "-fvisibility=hidden",
                "-ftls-model=initial-exec",
                "-DSNMALLOC_EXPORT=__attribute__((visibility(\"default\")))",
                "-DSNMALLOC_USE_CXX11_THREAD_ATEXIT_DIRECT",
                "-DSNMALLOC_USE_WAIT_ON_ADDRESS=1",
                "-DSNMALLOC_CHECK_LOADS=false",
                "-DSNMALLOC_PAGEID=false",
            ])
            .arg(format!("-I{}", root.display()))
            .arg(root.join("snmalloc/override/malloc.cc"))
            .arg(root.join("snmalloc/override/new.cc"))
            .args(["-static-libstdc++", "-o"])
            .arg(out);
        }
        other => bail!("{other} is not a peer built from source"),
    }
    Ok(cmd)
}

/// Builds peer `name` into `dir` unless it is there already; returns the library's path.
pub fn ensure(name: &str, repo_root: &Path, dir: &Path) -> Result<PathBuf> {
    let file = file_of(name).ok_or_else(|| anyhow!("{name} is not a peer built from source"))?;
    let out = dir.join(file);
    if out.is_file() {
        return Ok(out);
    }
    let manifest = repo_root.join("crates/segfit-bench-rs/Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let meta = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .context("running cargo metadata")?;
    if !meta.status.success() {
        bail!(
            "cargo metadata --manifest-path {} failed: {}",
            manifest.display(),
            String::from_utf8_lossy(&meta.stderr).trim()
        );
    }
    let pkg = if name == "mimalloc3" {
        "libmimalloc-sys"
    } else {
        "snmalloc-sys"
    };
    let src = package_dir(&String::from_utf8_lossy(&meta.stdout), pkg)
        .ok_or_else(|| anyhow!("{pkg} not found in the Rust benchmark's dependencies"))?;
    std::fs::create_dir_all(dir)?;
    eprintln!("building {name} from {}", src.display());
    let tmp = dir.join(format!("{file}.tmp"));
    let cmd = build_command(name, &src, &tmp)?;
    crate::workloads::build_into(cmd, &tmp, &out, &format!("building {name}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_registry_package_by_exact_name() {
        let meta = concat!(
            r#"{"packages":[{"name":"mimalloc","manifest_path":"/r/mimalloc-0.1.52/Cargo.toml"},"#,
            r#"{"name":"libmimalloc-sys","manifest_path":"/r/libmimalloc-sys-0.1.49/Cargo.toml"},"#,
            r#"{"name":"snmalloc-sys","manifest_path":"/r/snmalloc-sys-0.7.6/Cargo.toml"}]}"#
        );
        assert_eq!(
            package_dir(meta, "libmimalloc-sys"),
            Some(PathBuf::from("/r/libmimalloc-sys-0.1.49"))
        );
        assert_eq!(
            package_dir(meta, "snmalloc-sys"),
            Some(PathBuf::from("/r/snmalloc-sys-0.7.6"))
        );
        assert_eq!(package_dir(meta, "mimalloc-sys"), None);
        assert_eq!(package_dir(meta, "jemalloc"), None);
    }

    #[test]
    fn peers_compile_their_release_configuration() {
        let cmd = build_command("snmalloc", Path::new("/s"), Path::new("/o.so")).unwrap();
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into()).collect();
        assert!(args.contains(&"-DNDEBUG".to_string()) && args.contains(&"-O3".to_string()));
        assert!(args.contains(&"/s/upstream/src/snmalloc/override/malloc.cc".to_string()));
        let cmd = build_command("mimalloc3", Path::new("/m"), Path::new("/o.so")).unwrap();
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into()).collect();
        assert!(args.contains(&"/m/c_src/mimalloc/v3/src/static.c".to_string()));
        assert!(args.contains(&"-DMI_MALLOC_OVERRIDE".to_string()));
        assert!(build_command("glibc", Path::new("/"), Path::new("/o")).is_err());
    }
}
