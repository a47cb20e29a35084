//! Aggregation of raw runs into per-(workload, allocator) medians, checksum
//! cross-checks, and the text / markdown / CSV / JSON renderings.

use crate::stats::{median, Table};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One measured process run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run: usize,
    pub workload: String,
    pub allocator: String,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub maxrss_kib: u64,
    pub checksum: Option<String>,
    pub error: Option<String>,
}

/// Median results of one (workload, allocator) pair.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub runs_total: usize,
    pub runs_ok: usize,
    pub wall_s: Option<f64>,
    pub cpu_s: Option<f64>,
    pub rss_kib: Option<f64>,
    pub checksum: Option<String>,
    /// `None` when every run succeeded and the checksum agrees.
    pub error: Option<String>,
}

impl Cell {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.wall_s.is_some()
    }
    pub fn status(&self) -> String {
        match &self.error {
            None => "ok".into(),
            Some(e) => e.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub workloads: Vec<String>,
    pub allocators: Vec<String>,
    pub cells: BTreeMap<(String, String), Cell>,
    /// Workloads that were skipped, with the reason.
    pub skipped: Vec<(String, String)>,
}

impl Summary {
    /// Aggregates runs. A (workload, allocator) pair is an error if any run
    /// failed, if its runs disagree on the checksum, or if its checksum
    /// differs from the reference (glibc's, else the first allocator's).
    pub fn from_runs(workloads: &[String], allocators: &[String], runs: &[RunRecord]) -> Summary {
        let mut cells = BTreeMap::new();
        for w in workloads {
            for a in allocators {
                let rs: Vec<&RunRecord> = runs
                    .iter()
                    .filter(|r| &r.workload == w && &r.allocator == a)
                    .collect();
                if rs.is_empty() {
                    continue;
                }
                let ok: Vec<&&RunRecord> = rs.iter().filter(|r| r.error.is_none()).collect();
                let mut cell = Cell {
                    runs_total: rs.len(),
                    runs_ok: ok.len(),
                    ..Cell::default()
                };
                if let Some(bad) = rs.iter().find(|r| r.error.is_some()) {
                    cell.error = Some(format!(
                        "FAILED in {}/{} runs: {}",
                        rs.len() - ok.len(),
                        rs.len(),
                        bad.error.as_deref().unwrap_or("")
                    ));
                }
                let sums: Vec<&str> = ok.iter().filter_map(|r| r.checksum.as_deref()).collect();
                if let Some(first) = sums.first() {
                    cell.checksum = Some(first.to_string());
                    if sums.iter().any(|s| s != first) && cell.error.is_none() {
                        cell.error = Some(format!(
                            "CHECKSUM MISMATCH between runs: {}",
                            sums.join(" ")
                        ));
                    }
                }
                if !ok.is_empty() {
                    let f = |g: &dyn Fn(&RunRecord) -> f64| {
                        median(&ok.iter().map(|r| g(r)).collect::<Vec<_>>())
                    };
                    cell.wall_s = f(&|r| r.wall_s);
                    cell.cpu_s = f(&|r| r.cpu_s);
                    cell.rss_kib = f(&|r| r.maxrss_kib as f64);
                }
                cells.insert((w.clone(), a.clone()), cell);
            }
            // cross-allocator checksum check
            let reference = allocators
                .iter()
                .filter_map(|a| cells.get(&(w.clone(), a.clone())))
                .filter(|c: &&Cell| c.error.is_none())
                .find_map(|c| c.checksum.clone());
            let glibc_ref = cells
                .get(&(w.clone(), "glibc".to_string()))
                .filter(|c| c.error.is_none())
                .and_then(|c| c.checksum.clone());
            if let Some(reference) = glibc_ref.or(reference) {
                for a in allocators {
                    if let Some(c) = cells.get_mut(&(w.clone(), a.clone())) {
                        if c.error.is_none() && c.checksum.as_deref() != Some(&reference) {
                            c.error = Some(format!(
                                "CHECKSUM MISMATCH: {} vs reference {reference}",
                                c.checksum.as_deref().unwrap_or("none")
                            ));
                        }
                    }
                }
            }
        }
        Summary {
            workloads: workloads.to_vec(),
            allocators: allocators.to_vec(),
            cells,
            skipped: Vec::new(),
        }
    }

    pub fn cell(&self, w: &str, a: &str) -> Option<&Cell> {
        self.cells.get(&(w.to_string(), a.to_string()))
    }

    fn table(&self, f: impl Fn(&Cell) -> Option<f64>) -> Table {
        let mut t = Table::new(self.workloads.clone(), self.allocators.clone());
        for ((w, a), c) in &self.cells {
            if c.ok() {
                if let Some(v) = f(c) {
                    t.set(w, a, v);
                }
            }
        }
        t
    }

    /// Median wall times of the successful cells.
    pub fn wall(&self) -> Table {
        self.table(|c| c.wall_s)
    }
    pub fn cpu(&self) -> Table {
        self.table(|c| c.cpu_s)
    }
    /// Median peak RSS in KiB of the successful cells.
    pub fn rss(&self) -> Table {
        self.table(|c| c.rss_kib)
    }

    /// Messages for every failed or mismatching cell.
    pub fn errors(&self) -> Vec<String> {
        self.cells
            .iter()
            .filter_map(|((w, a), c)| c.error.as_ref().map(|e| format!("{w} / {a}: {e}")))
            .collect()
    }

    fn has(&self, a: &str) -> bool {
        self.allocators.iter().any(|x| x == a)
    }
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// A rectangular table of strings: a header row, then body rows.
struct Grid {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Grid {
    fn text(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut s = format!("{}\n", self.title);
        for (n, r) in std::iter::once(&self.header).chain(&self.rows).enumerate() {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i == 0 {
                    let _ = write!(line, "{c:<w$}", w = width[i]);
                } else {
                    let _ = write!(line, "  {c:>w$}", w = width[i]);
                }
            }
            s.push_str(line.trim_end());
            s.push('\n');
            if n == 0 {
                let total: usize = width.iter().sum::<usize>() + 2 * (cols - 1);
                s.push_str(&"-".repeat(total));
                s.push('\n');
            }
        }
        s
    }

    fn markdown(&self) -> String {
        let mut s = format!("**{}**\n\n", self.title);
        let _ = writeln!(s, "| {} |", self.header.join(" | "));
        let align: Vec<&str> = (0..self.header.len())
            .map(|i| if i == 0 { ":---" } else { "---:" })
            .collect();
        let _ = writeln!(s, "| {} |", align.join(" | "));
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
}

fn mark(c: Option<&Cell>) -> Option<String> {
    match c {
        None => Some("-".into()),
        Some(c) if c.error.as_deref().is_some_and(|e| e.contains("MISMATCH")) => {
            Some("MISMATCH".into())
        }
        Some(c) if !c.ok() => Some("FAIL".into()),
        _ => None,
    }
}

fn grids(s: &Summary) -> Vec<Grid> {
    let wall = s.wall();
    let rss = s.rss();
    let mut header = vec!["workload".to_string()];
    header.extend(s.allocators.iter().cloned());
    let mut out = Vec::new();

    let baseline =
        |t: &Table, base: &str| -> Option<Table> { s.has(base).then(|| t.ratios_to(base)) };
    let wall_g = baseline(&wall, "glibc");
    let rss_g = baseline(&rss, "glibc");

    // absolute values with the ratio to glibc in parentheses
    let abs_grid = |title: &str, t: &Table, ratios: &Option<Table>, fmt: &dyn Fn(f64) -> String| {
        let mut rows = Vec::new();
        for w in &s.workloads {
            let mut row = vec![w.clone()];
            for a in &s.allocators {
                if let Some(m) = mark(s.cell(w, a)) {
                    row.push(m);
                    continue;
                }
                let mut v = fmt_opt(t.get(w, a), fmt);
                if let Some(r) = ratios.as_ref().and_then(|r| r.get(w, a)) {
                    if a != "glibc" {
                        let _ = write!(v, " ({r:.2}x)");
                    }
                }
                row.push(v);
            }
            rows.push(row);
        }
        if let Some(r) = ratios {
            let mut row = vec!["geomean vs glibc".to_string()];
            for a in &s.allocators {
                row.push(fmt_opt(r.column_geomean(a), |g| format!("{g:.2}x")));
            }
            rows.push(row);
        }
        Grid {
            title: title.to_string(),
            header: header.clone(),
            rows,
        }
    };
    out.push(abs_grid(
        "Wall time, median [s] (ratio to glibc; lower is better)",
        &wall,
        &wall_g,
        &|v| format!("{v:.3}"),
    ));
    out.push(abs_grid(
        "CPU time (user+sys), median [s] (ratio to glibc)",
        &s.cpu(),
        &baseline(&s.cpu(), "glibc"),
        &|v| format!("{v:.3}"),
    ));
    out.push(abs_grid(
        "Peak RSS, median [MiB] (ratio to glibc; lower is better)",
        &rss,
        &rss_g,
        &|v| format!("{:.1}", v / 1024.0),
    ));

    if s.has("mimalloc") {
        let r = wall.ratios_to("mimalloc");
        let rr = rss.ratios_to("mimalloc");
        let mut rows = Vec::new();
        for w in &s.workloads {
            let mut row = vec![w.clone()];
            for a in &s.allocators {
                row.push(mark(s.cell(w, a)).unwrap_or_else(|| {
                    format!(
                        "{} / {}",
                        fmt_opt(r.get(w, a), |v| format!("{v:.2}x")),
                        fmt_opt(rr.get(w, a), |v| format!("{v:.2}x"))
                    )
                }));
            }
            rows.push(row);
        }
        let mut row = vec!["geomean".to_string()];
        for a in &s.allocators {
            row.push(format!(
                "{} / {}",
                fmt_opt(r.column_geomean(a), |v| format!("{v:.2}x")),
                fmt_opt(rr.column_geomean(a), |v| format!("{v:.2}x"))
            ));
        }
        rows.push(row);
        out.push(Grid {
            title: "Ratio to mimalloc: wall time / peak RSS (lower is better)".into(),
            header: header.clone(),
            rows,
        });
    }
    out
}

fn footer(s: &Summary) -> Vec<String> {
    let mut notes = Vec::new();
    for (w, why) in &s.skipped {
        notes.push(format!("skipped {w}: {why}"));
    }
    for e in s.errors() {
        notes.push(format!("ERROR {e}"));
    }
    notes.push(
        "geomeans are over the workloads where both allocators succeeded; FAIL and MISMATCH cells are excluded"
            .into(),
    );
    notes
}

/// Plain-text tables for the terminal.
pub fn render_text(s: &Summary) -> String {
    let mut out = String::new();
    for g in grids(s) {
        out.push_str(&g.text());
        out.push('\n');
    }
    for n in footer(s) {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// The same tables as GitHub markdown.
pub fn render_markdown(s: &Summary) -> String {
    let mut out = String::new();
    for g in grids(s) {
        out.push_str(&g.markdown());
        out.push('\n');
    }
    for n in footer(s) {
        let _ = writeln!(out, "- {n}");
    }
    out
}

/// Quotes a CSV field when needed (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_line(fields: &[String]) -> String {
    let v: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    format!("{}\n", v.join(","))
}

pub const CSV_HEADER: &[&str] = &[
    "workload",
    "allocator",
    "runs_ok",
    "runs_total",
    "wall_s",
    "cpu_s",
    "peak_rss_kib",
    "wall_vs_glibc",
    "wall_vs_mimalloc",
    "rss_vs_glibc",
    "checksum",
    "status",
];

/// One row per (workload, allocator) with the medians and ratios.
pub fn summary_csv(s: &Summary) -> String {
    let header: Vec<String> = CSV_HEADER.iter().map(|h| h.to_string()).collect();
    let mut out = csv_line(&header);
    let wall = s.wall();
    let wg = wall.ratios_to("glibc");
    let wm = wall.ratios_to("mimalloc");
    let rg = s.rss().ratios_to("glibc");
    let num = |v: Option<f64>, p: usize| v.map(|v| format!("{v:.p$}")).unwrap_or_default();
    for w in &s.workloads {
        for a in &s.allocators {
            let Some(c) = s.cell(w, a) else { continue };
            out.push_str(&csv_line(&[
                w.clone(),
                a.clone(),
                c.runs_ok.to_string(),
                c.runs_total.to_string(),
                num(c.wall_s, 4),
                num(c.cpu_s, 4),
                num(c.rss_kib, 0),
                num(wg.get(w, a), 4),
                num(wm.get(w, a), 4),
                num(rg.get(w, a), 4),
                c.checksum.clone().unwrap_or_default(),
                c.status(),
            ]));
        }
    }
    out
}

/// Every individual run.
pub fn runs_csv(runs: &[RunRecord]) -> String {
    let header = [
        "run",
        "workload",
        "allocator",
        "wall_s",
        "cpu_s",
        "peak_rss_kib",
        "checksum",
        "error",
    ];
    let mut out = csv_line(&header.map(String::from));
    for r in runs {
        out.push_str(&csv_line(&[
            r.run.to_string(),
            r.workload.clone(),
            r.allocator.clone(),
            format!("{:.4}", r.wall_s),
            format!("{:.4}", r.cpu_s),
            r.maxrss_kib.to_string(),
            r.checksum.clone().unwrap_or_default(),
            r.error.clone().unwrap_or_default(),
        ]));
    }
    out
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

/// JSON document with the run parameters, per-cell medians and geomeans.
pub fn json(s: &Summary, params: &[(&str, String)]) -> String {
    let mut o = String::from("{\n  \"params\": {");
    let p: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
        .collect();
    o.push_str(&p.join(", "));
    o.push_str("},\n  \"results\": [\n");
    let wg = s.wall().ratios_to("glibc");
    let mut items = Vec::new();
    for w in &s.workloads {
        for a in &s.allocators {
            let Some(c) = s.cell(w, a) else { continue };
            items.push(format!(
                "    {{\"workload\": {}, \"allocator\": {}, \"runs_ok\": {}, \"runs_total\": {}, \"wall_s\": {}, \"cpu_s\": {}, \"peak_rss_kib\": {}, \"wall_vs_glibc\": {}, \"checksum\": {}, \"status\": {}}}",
                json_str(w),
                json_str(a),
                c.runs_ok,
                c.runs_total,
                json_num(c.wall_s),
                json_num(c.cpu_s),
                json_num(c.rss_kib),
                json_num(wg.get(w, a)),
                c.checksum.as_deref().map(json_str).unwrap_or_else(|| "null".into()),
                json_str(&c.status())
            ));
        }
    }
    o.push_str(&items.join(",\n"));
    o.push_str("\n  ],\n  \"geomean_wall_vs_glibc\": {");
    let g: Vec<String> = s
        .allocators
        .iter()
        .map(|a| format!("{}: {}", json_str(a), json_num(wg.column_geomean(a))))
        .collect();
    o.push_str(&g.join(", "));
    o.push_str("}\n}\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(run: usize, w: &str, a: &str, wall: f64, sum: &str) -> RunRecord {
        RunRecord {
            run,
            workload: w.into(),
            allocator: a.into(),
            wall_s: wall,
            cpu_s: wall,
            maxrss_kib: 1024,
            checksum: Some(sum.into()),
            error: None,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn medians_and_mismatch_detection() {
        let runs = vec![
            rec(0, "w", "glibc", 1.0, "aa"),
            rec(1, "w", "glibc", 3.0, "aa"),
            rec(2, "w", "glibc", 2.0, "aa"),
            rec(0, "w", "x", 0.5, "aa"),
            rec(0, "w", "bad", 0.5, "bb"),
        ];
        let s = Summary::from_runs(&names(&["w"]), &names(&["glibc", "x", "bad"]), &runs);
        assert_eq!(s.cell("w", "glibc").unwrap().wall_s, Some(2.0));
        assert!(s.cell("w", "x").unwrap().ok());
        let bad = s.cell("w", "bad").unwrap();
        assert!(bad.error.as_deref().unwrap().contains("MISMATCH"));
        assert_eq!(s.wall().ratios_to("glibc").get("w", "x"), Some(0.25));
        assert_eq!(s.wall().get("w", "bad"), None);
        assert_eq!(s.errors().len(), 1);
        let text = render_text(&s);
        assert!(text.contains("MISMATCH"), "{text}");
    }

    #[test]
    fn failed_run_marks_cell() {
        let mut r = rec(0, "w", "x", 1.0, "aa");
        r.error = Some("killed by signal 11".into());
        r.checksum = None;
        let runs = vec![rec(0, "w", "glibc", 1.0, "aa"), r];
        let s = Summary::from_runs(&names(&["w"]), &names(&["glibc", "x"]), &runs);
        let c = s.cell("w", "x").unwrap();
        assert!(!c.ok());
        assert!(c.status().contains("signal 11"));
        assert!(render_markdown(&s).contains("FAIL"));
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn summary_csv_rows() {
        let runs = vec![
            rec(0, "w1", "glibc", 2.0, "aa"),
            rec(0, "w1", "mimalloc", 1.0, "aa"),
            rec(0, "w2", "glibc", 4.0, "cc"),
            rec(0, "w2", "mimalloc", 8.0, "cc"),
        ];
        let s = Summary::from_runs(&names(&["w1", "w2"]), &names(&["glibc", "mimalloc"]), &runs);
        let csv = summary_csv(&s);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert_eq!(
            lines[2],
            "w1,mimalloc,1,1,1.0000,1.0000,1024,0.5000,1.0000,1.0000,aa,ok"
        );
        assert!(lines[4].starts_with("w2,mimalloc,1,1,8.0000,"));
        let runs_csv = runs_csv(&runs);
        assert_eq!(runs_csv.lines().count(), 5);
        let j = json(&s, &[("runs", "1".into())]);
        assert!(j.contains("\"geomean_wall_vs_glibc\""));
        assert!(j.contains("\"mimalloc\": 1"), "{j}");
    }
}
