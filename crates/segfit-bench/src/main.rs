//! segfit-bench: runs allocator benchmark workloads, each as a whole process
//! under each available allocator (glibc, segfit, mimalloc, jemalloc,
//! tcmalloc via LD_PRELOAD), and reports median wall time, CPU time and peak
//! RSS as tables, CSV, JSON, markdown and an SVG chart.

mod allocators;
mod measure;
mod peers;
mod report;
mod stats;
mod svg;
mod workloads;

use anyhow::{bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use report::{RunRecord, Summary};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "segfit-bench",
    about = "Allocator benchmarks: segfit vs glibc, mimalloc, jemalloc, tcmalloc"
)]
struct Args {
    /// Runs per (workload, allocator); the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Work scale factor passed to every workload (1.0 = about 1 s under glibc).
    #[arg(long)]
    scale: Option<f64>,
    /// Comma-separated workloads to run (default: all; see --list).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Comma-separated allocators: glibc, segfit, mimalloc, jemalloc, tcmalloc (Debian packages),
    /// mimalloc3, snmalloc (built from the Rust benchmark's crate sources), or name=/path/to/lib.so.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "glibc,segfit,mimalloc,jemalloc,tcmalloc,mimalloc3,snmalloc"
    )]
    allocators: Vec<String>,
    /// Output directory for bench.csv, bench_runs.csv, bench.json, bench.md and bench.svg.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Smoke-test mode: 1 run at scale 0.3 (an explicit --runs/--scale wins).
    #[arg(long)]
    quick: bool,
    /// Also print the tables as markdown on stdout.
    #[arg(long)]
    markdown: bool,
    /// Use this libsegfit.so instead of building/searching for it.
    #[arg(long)]
    segfit_lib: Option<PathBuf>,
    /// Don't run `cargo build --release -p segfit-malloc` before searching for libsegfit.so.
    #[arg(long)]
    no_build: bool,
    /// Don't install missing peers (libmimalloc2.0, libjemalloc2, libtcmalloc-minimal4) or
    /// sqlite3 with apt-get; skip them with a warning instead.
    #[arg(long)]
    no_install: bool,
    /// Kill a workload process after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Directory for compiled workloads (default: <target dir>/segfit-bench-cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Exit non-zero on a failure or checksum mismatch under any allocator
    /// (by default only glibc, segfit and custom name=path allocators count;
    /// failures of the packaged third-party allocators are reported only).
    #[arg(long)]
    strict: bool,
    /// List the workloads and exit.
    #[arg(long)]
    list: bool,
}

/// Packaged allocators whose own bugs should not fail the suite by default.
const THIRD_PARTY: &[&str] = &["mimalloc", "jemalloc", "tcmalloc", "mimalloc3", "snmalloc"];

/// The workspace root, from this crate's manifest dir.
fn repo_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// `<target dir>/segfit-bench-cache`, derived from this executable's path
/// (`<target>/<profile>/segfit-bench`).
fn default_cache_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("segfit-bench-cache")
}

fn main() {
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn real_main() -> Result<i32> {
    let args = Args::parse();
    if args.list {
        for w in workloads::ALL {
            println!("{:<16} {}", w.name, w.description);
        }
        return Ok(0);
    }
    let runs = if args.quick && !std::env::args().any(|a| a.starts_with("--runs")) {
        1
    } else {
        args.runs
    };
    let scale = args.scale.unwrap_or(if args.quick { 0.3 } else { 1.0 });
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !(scale > 0.0 && scale.is_finite()) {
        bail!("--scale must be a positive number");
    }

    // workloads
    let selected: Vec<&'static workloads::Workload> = if args.only.is_empty() {
        workloads::ALL.iter().collect()
    } else {
        let mut v = Vec::new();
        for name in args.only.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            match workloads::by_name(name) {
                Some(w) => v.push(w),
                None => {
                    let names: Vec<&str> = workloads::ALL.iter().map(|w| w.name).collect();
                    bail!("unknown workload {name:?}; available: {}", names.join(", "));
                }
            }
        }
        v
    };

    // allocators
    let root = repo_root();
    let cache = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let mut warnings = Vec::new();
    if !args.no_install {
        let want_sqlite = selected.iter().any(|w| w.name == "sqlite");
        let pkgs = allocators::missing_packages(
            &args.allocators,
            allocators::packaged_present,
            want_sqlite,
            workloads::which("sqlite3").is_some(),
        );
        allocators::install_missing(&pkgs, &mut warnings);
    }
    let allocs = allocators::resolve(
        &args.allocators,
        &allocators::SegfitOptions {
            repo_root: &root,
            lib: args.segfit_lib.as_deref(),
            build: !args.no_build,
            peer_dir: &cache.join("peers"),
        },
        &mut warnings,
    )?;
    for w in &warnings {
        eprintln!("{w}");
    }
    if allocs.is_empty() {
        bail!("no allocator available");
    }
    for a in &allocs {
        match &a.preload {
            Some(p) => eprintln!("allocator {:<9} LD_PRELOAD={}", a.name, p.display()),
            None => eprintln!("allocator {:<9} (system malloc, nothing preloaded)", a.name),
        }
    }

    // build / generate
    let mut prepared = Vec::new();
    let mut skipped = Vec::new();
    for w in &selected {
        match workloads::prepare(w, &cache, scale)
            .with_context(|| format!("preparing workload {}", w.name))?
        {
            Ok(p) => prepared.push(p),
            Err(why) => {
                eprintln!("warning: skipping workload {}: {why}", w.name);
                skipped.push((w.name.to_string(), why));
            }
        }
    }

    let launcher = workloads::compile_c("launch", measure::LAUNCH_C, &cache)
        .context("compiling the launcher")?;

    // run, interleaved: for run { for workload { for allocator } }
    let total = (runs * prepared.len() * allocs.len()) as u64;
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let scratch = cache.join(format!("run-{}", std::process::id()));
    let timeout = Duration::from_secs(args.timeout);
    let mut records = Vec::new();
    for run in 0..runs {
        for p in &prepared {
            for a in &allocs {
                pb.set_message(format!("run {}/{runs} {} / {}", run + 1, p.name, a.name));
                let m = measure::run(p, a.preload.as_deref(), &launcher, &scratch, timeout)?;
                if let Some(e) = &m.error {
                    pb.println(format!(
                        "error: {} / {} run {}: {e}",
                        p.name,
                        a.name,
                        run + 1
                    ));
                }
                records.push(RunRecord {
                    run,
                    workload: p.name.to_string(),
                    allocator: a.name.clone(),
                    wall_s: m.wall_s,
                    cpu_s: m.cpu_s,
                    maxrss_kib: m.maxrss_kib,
                    checksum: m.checksum,
                    error: m.error,
                });
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();
    let _ = std::fs::remove_dir_all(&scratch);

    let wnames: Vec<String> = prepared.iter().map(|p| p.name.to_string()).collect();
    let anames: Vec<String> = allocs.iter().map(|a| a.name.clone()).collect();
    let mut summary = Summary::from_runs(&wnames, &anames, &records);
    summary.skipped = skipped;

    println!(
        "segfit-bench: {runs} run(s) per cell, scale {scale}, {} workload(s), allocators: {}\n",
        wnames.len(),
        anames.join(", ")
    );
    print!("{}", report::render_text(&summary));
    let md = report::render_markdown(&summary);
    if args.markdown {
        println!("\n{md}");
    }

    // files
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let params = [
        ("runs", runs.to_string()),
        ("scale", scale.to_string()),
        ("allocators", anames.join(",")),
        ("workloads", wnames.join(",")),
    ];
    let files = [
        ("bench.csv", report::summary_csv(&summary)),
        ("bench_runs.csv", report::runs_csv(&records)),
        ("bench.json", report::json(&summary, &params)),
        (
            "bench.md",
            format!("Runs per cell: {runs}, scale: {scale}.\n\n{md}"),
        ),
        ("bench.svg", svg::render(&summary)),
    ];
    for (name, body) in files {
        let path = args.out.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "\nwrote {}/bench.{{csv,json,md,svg}} and bench_runs.csv",
        args.out.display()
    );

    let errors = summary.errors();
    if errors.is_empty() {
        return Ok(0);
    }
    eprintln!("{} error(s):", errors.len());
    for e in &errors {
        eprintln!("  {e}");
    }
    let fatal = summary.cells.iter().any(|((_, a), c)| {
        c.error.is_some() && (args.strict || !THIRD_PARTY.contains(&a.as_str()))
    });
    if fatal {
        Ok(1)
    } else {
        eprintln!("(only packaged third-party allocators failed; exit status 0 unless --strict)");
        Ok(0)
    }
}
