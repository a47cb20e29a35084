//! The workload catalogue: C programs compiled on demand into a cache
//! directory, plus the real-program workloads (python3, sqlite3, gcc) whose
//! inputs are generated here.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a workload's allocator-independent checksum is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    /// The program prints a line `checksum <value>`.
    Line,
    /// FNV-1a hash of the whole stdout.
    StdoutHash,
    /// Only the exit status (for compilers, whose stdout is empty).
    ExitStatus,
}

/// What kind of program a workload runs.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A C source file compiled with `cc -O2 -pthread`.
    C(&'static str),
    /// `python3` running the bundled script.
    Python,
    /// `sqlite3 :memory:` reading a generated SQL script on stdin.
    Sqlite,
    /// `cc -O2 -c` compiling a generated C file.
    Gcc,
}

#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    pub description: &'static str,
    pub kind: Kind,
}

pub const ALL: &[Workload] = &[
    Workload {
        name: "binary_trees",
        description: "small-object churn: binary trees up to depth 18",
        kind: Kind::C(include_str!("../workloads/binary_trees.c")),
    },
    Workload {
        name: "random_realloc",
        description: "malloc/realloc/free of random sizes 1 B..64 KiB, 1 thread",
        kind: Kind::C(include_str!("../workloads/random_realloc.c")),
    },
    Workload {
        name: "larson",
        description: "larson-style server, 2 threads, cross-thread frees",
        kind: Kind::C(include_str!("../workloads/larson.c")),
    },
    Workload {
        name: "prodcons",
        description: "2 producers malloc, 2 consumers free via a bounded queue",
        kind: Kind::C(include_str!("../workloads/prodcons.c")),
    },
    Workload {
        name: "fragment",
        description: "free a scattered 90% of small blocks, then allocate another size class",
        kind: Kind::C(include_str!("../workloads/fragment.c")),
    },
    Workload {
        name: "large",
        description: "blocks of 64 KiB..16 MiB allocated, touched, freed",
        kind: Kind::C(include_str!("../workloads/large.c")),
    },
    Workload {
        name: "aligned",
        description: "posix_memalign/aligned_alloc with alignments 16 B..64 KiB",
        kind: Kind::C(include_str!("../workloads/aligned.c")),
    },
    Workload {
        name: "thread_churn",
        description: "thousands of short-lived threads that allocate and free",
        kind: Kind::C(include_str!("../workloads/thread_churn.c")),
    },
    Workload {
        name: "cache_scratch",
        description: "passive false sharing: objects from one thread used by another",
        kind: Kind::C(include_str!("../workloads/cache_scratch.c")),
    },
    Workload {
        name: "python",
        description: "python3 script: dicts, lists, strings, json round-trips",
        kind: Kind::Python,
    },
    Workload {
        name: "sqlite",
        description: "sqlite3 in-memory DB: inserts, indexes, queries",
        kind: Kind::Sqlite,
    },
    Workload {
        name: "gcc",
        description: "cc -O2 -c of a generated C file of a few thousand lines",
        kind: Kind::Gcc,
    },
];

const PY_SCRIPT: &str = include_str!("../workloads/py_workload.py");

pub fn by_name(name: &str) -> Option<&'static Workload> {
    ALL.iter().find(|w| w.name == name)
}

/// A workload ready to run: the command line and how to check its output.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub stdin: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub checksum: ChecksumMode,
}

/// 64-bit FNV-1a hash (stable across Rust versions, unlike `DefaultHasher`).
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Finds `name` in `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The interpreter `python3` on `PATH` runs: with pyenv, `python3` is a shell script that starts
/// bash and `pyenv exec` before the real interpreter, and those processes (their time, and their
/// allocations under each allocator) are not the workload. Falls back to `py` itself.
fn real_interpreter(py: PathBuf) -> PathBuf {
    let out = Command::new(&py)
        .args(["-c", "import sys; print(sys.executable)"])
        .env_remove("LD_PRELOAD")
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let exe = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            if exe.is_file() {
                exe
            } else {
                py
            }
        }
        _ => py,
    }
}

fn scale_arg(scale: f64) -> OsString {
    OsString::from(format!("{scale}"))
}

/// Compiles (or reuses from the cache) a C program (a workload or the launcher) and returns the
/// binary.
pub fn compile_c(name: &str, source: &str, cache: &Path) -> Result<PathBuf> {
    const FLAGS: &[&str] = &["-O2", "-pthread"];
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let key = fnv1a(format!("{cc} {FLAGS:?}\n{source}").as_bytes());
    let bin = cache.join(format!("{name}-{key:016x}"));
    if bin.is_file() {
        return Ok(bin);
    }
    let src = cache.join(format!("{name}.c"));
    fs::write(&src, source).with_context(|| format!("writing {}", src.display()))?;
    let tmp = cache.join(format!("{name}-{key:016x}.tmp"));
    let mut cmd = Command::new(&cc);
    cmd.args(FLAGS).arg("-o").arg(&tmp).arg(&src);
    build_into(cmd, &tmp, &bin, &format!("compiling {name} with {cc}"))?;
    Ok(bin)
}

/// Runs compiler command `cmd`, which writes `tmp`, and moves `tmp` to `out` once it succeeded
/// (so a killed or failed build never leaves a file at `out` that later runs would trust).
/// `what` names the step in errors, with the compiler's stderr.
pub fn build_into(mut cmd: Command, tmp: &Path, out: &Path, what: &str) -> Result<()> {
    let o = cmd
        .output()
        .with_context(|| format!("{what} (is the compiler installed?)"))?;
    if !o.status.success() {
        bail!("{what} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    }
    fs::rename(tmp, out)?;
    Ok(())
}

/// Small deterministic generator for the generated inputs.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// SQL script for the sqlite3 workload; `rows` scales the table size.
pub fn generate_sql(rows: u64) -> String {
    use std::fmt::Write;
    let mut rng = Lcg(2024);
    let mut s = String::new();
    s.push_str(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL, payload TEXT);\n",
    );
    s.push_str("CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT);\n");
    s.push_str("BEGIN;\n");
    // bulk rows generated inside sqlite
    let _ = writeln!(
        s,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{rows}) \
         INSERT INTO t SELECT x, printf('name%d', (x*7919)%10007), x%97, ((x*31)%1000)/8.0, \
         substr('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ', 1 + x%20, 5 + x%40) FROM c;"
    );
    // parsed statements, so that the parser and prepared statements churn too
    for i in 0..rows / 10 {
        let len = 4 + rng.next(60) as usize;
        let v: String = (0..len)
            .map(|_| (b'a' + rng.next(26) as u8) as char)
            .collect();
        let _ = writeln!(
            s,
            "INSERT OR REPLACE INTO kv VALUES('key{}', '{v}');",
            rng.next(rows / 4 + 1) + i % 3
        );
    }
    s.push_str("COMMIT;\n");
    s.push_str("CREATE INDEX t_grp ON t(grp);\nCREATE INDEX t_name ON t(name);\nCREATE INDEX kv_v ON kv(v);\n");
    s.push_str(
        "SELECT grp, count(*), sum(val), max(length(payload)) FROM t GROUP BY grp ORDER BY grp;\n",
    );
    s.push_str("SELECT count(*), sum(id) FROM t WHERE name LIKE 'name1%';\n");
    s.push_str("UPDATE t SET val = val * 2, payload = payload || name WHERE grp < 20;\n");
    s.push_str("DELETE FROM t WHERE id % 5 = 0;\n");
    s.push_str("SELECT a.grp, count(*) FROM t a JOIN t b ON b.id = a.id + 1 AND b.grp = a.grp + 1 GROUP BY a.grp ORDER BY a.grp LIMIT 10;\n");
    s.push_str("SELECT name, count(*) AS n FROM t GROUP BY name ORDER BY n DESC, name LIMIT 20;\n");
    s.push_str("SELECT count(*), sum(length(v)), min(k), max(k) FROM kv;\n");
    s.push_str("SELECT length(group_concat(v, ',')) FROM (SELECT v FROM kv ORDER BY v);\n");
    s.push_str("SELECT substr(v, 1, 3) AS p, count(*) FROM kv GROUP BY p ORDER BY count(*) DESC, p LIMIT 10;\n");
    s
}

/// C source for the gcc workload: `funcs` functions of ~12 lines each.
pub fn generate_c(funcs: u64) -> String {
    use std::fmt::Write;
    let mut rng = Lcg(7);
    let mut s = String::from("#include <stddef.h>\n#include <string.h>\n\n");
    for i in 0..funcs {
        let a = rng.next(1000);
        let b = 1 + rng.next(17);
        let _ = writeln!(
            s,
            "struct rec{i} {{ int a; long b[{b}]; double c; char name[{}]; }};",
            8 + b
        );
        let _ = writeln!(s, "static long helper{i}(const struct rec{i} *r, int n) {{");
        let _ = writeln!(s, "    long acc = {a};");
        let _ = writeln!(
            s,
            "    for (int k = 0; k < n && k < {b}; k++) acc += r->b[k] * (k ^ {a});"
        );
        let _ = writeln!(
            s,
            "    switch (n % 4) {{ case 0: acc ^= r->a; break; case 1: acc += (long)r->c; break;"
        );
        let _ = writeln!(
            s,
            "    case 2: acc -= (long)strlen(r->name); break; default: acc *= {b}; }}"
        );
        let _ = writeln!(s, "    return acc;\n}}");
        let _ = writeln!(s, "long entry{i}(int n) {{");
        let _ = writeln!(
            s,
            "    struct rec{i} r; memset(&r, 0, sizeof r); r.a = n + {a}; r.c = n * 0.5;"
        );
        if i > 0 {
            let callee = rng.next(i);
            let _ = writeln!(s, "    extern long entry{callee}(int);");
            let _ = writeln!(
                s,
                "    if (n > {b}) return helper{i}(&r, n) + entry{callee}(n - {b});"
            );
        }
        let _ = writeln!(s, "    return helper{i}(&r, n);\n}}\n");
    }
    s
}

/// Prepares a workload for running: compiles it or generates its input.
/// Returns `Ok(Err(reason))` when a required tool is missing.
pub fn prepare(
    w: &'static Workload,
    cache: &Path,
    scale: f64,
) -> Result<std::result::Result<Prepared, String>> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let p = match w.kind {
        Kind::C(source) => Prepared {
            name: w.name,
            program: compile_c(w.name, source, cache)?,
            args: vec![scale_arg(scale)],
            stdin: None,
            env: vec![],
            checksum: ChecksumMode::Line,
        },
        Kind::Python => {
            let Some(py) = which("python3") else {
                return Ok(Err("python3 not found in PATH".into()));
            };
            let py = real_interpreter(py);
            let script = cache.join("py_workload.py");
            fs::write(&script, PY_SCRIPT)?;
            Prepared {
                name: w.name,
                program: py,
                args: vec![script.into_os_string(), scale_arg(scale)],
                stdin: None,
                env: vec![
                    ("PYTHONHASHSEED".into(), "0".into()),
                    ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
                ],
                checksum: ChecksumMode::Line,
            }
        }
        Kind::Sqlite => {
            let Some(sqlite) = which("sqlite3") else {
                return Ok(Err(
                    "sqlite3 not found in PATH (apt-get install sqlite3)".into()
                ));
            };
            let rows = ((300_000.0 * scale) as u64).max(1000);
            let sql = cache.join(format!("sqlite-{rows}.sql"));
            fs::write(&sql, generate_sql(rows))?;
            Prepared {
                name: w.name,
                program: sqlite,
                args: vec![":memory:".into()],
                stdin: Some(sql),
                env: vec![],
                checksum: ChecksumMode::StdoutHash,
            }
        }
        Kind::Gcc => {
            let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
            let Some(cc) = which(&cc) else {
                return Ok(Err(format!("{cc} not found in PATH")));
            };
            let funcs = ((200.0 * scale) as u64).max(20);
            let src = cache.join(format!("gen-{funcs}.c"));
            fs::write(&src, generate_c(funcs))?;
            let obj = cache.join("gen.o");
            Prepared {
                name: w.name,
                program: cc,
                args: vec![
                    "-O2".into(),
                    "-c".into(),
                    src.into_os_string(),
                    "-o".into(),
                    obj.into_os_string(),
                ],
                stdin: None,
                env: vec![],
                checksum: ChecksumMode::ExitStatus,
            }
        }
    };
    Ok(Ok(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
        assert!(by_name("larson").is_some());
        assert!(by_name("nope").is_none());
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn generators_are_deterministic() {
        assert_eq!(generate_sql(1000), generate_sql(1000));
        assert_eq!(generate_c(30), generate_c(30));
        assert!(generate_c(30).lines().count() > 300);
    }
}
