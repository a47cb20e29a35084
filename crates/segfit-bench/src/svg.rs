//! Hand-written SVG grouped bar chart of wall-time ratios to glibc: one group
//! per workload (plus the geometric mean), one bar per allocator, on a log
//! scale centred on 1.0 (bars below the line are faster than glibc).

use crate::report::Summary;
use std::fmt::Write;

const COLORS: &[&str] = &[
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders the chart. Allocators other than glibc get bars; missing or
/// failed cells are left empty.
pub fn render(s: &Summary) -> String {
    let ratios = s.wall().ratios_to("glibc");
    let allocs: Vec<&String> = s.allocators.iter().filter(|a| *a != "glibc").collect();
    let mut groups: Vec<(String, Vec<Option<f64>>)> = s
        .workloads
        .iter()
        .map(|w| (w.clone(), allocs.iter().map(|a| ratios.get(w, a)).collect()))
        .collect();
    groups.push((
        "geomean".into(),
        allocs.iter().map(|a| ratios.column_geomean(a)).collect(),
    ));

    // y range in powers of two, always including 1.0
    let vals: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.1.iter().flatten().copied())
        .collect();
    let lo = vals
        .iter()
        .copied()
        .fold(1.0f64, f64::min)
        .log2()
        .floor()
        .min(-1.0);
    let hi = vals
        .iter()
        .copied()
        .fold(1.0f64, f64::max)
        .log2()
        .ceil()
        .max(1.0);

    let bar_w = 14.0;
    let group_w = (allocs.len().max(1) as f64) * bar_w + 18.0;
    let (left, right, top, bottom) = (70.0, 20.0, 50.0, 110.0);
    let plot_h = 320.0;
    let width = (left + right + group_w * groups.len() as f64).max(700.0);
    let height = top + plot_h + bottom;
    let y = |r: f64| top + (hi - r.log2()) / (hi - lo) * plot_h;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{left}" y="20" font-size="14" font-weight="bold">Wall time relative to glibc (median; log scale; below 1.0 = faster)</text>"#
    );
    // grid lines and y labels
    let mut e = lo as i32;
    while e <= hi as i32 {
        let r = 2f64.powi(e);
        let yy = y(r);
        let stroke = if e == 0 { "#000" } else { "#ddd" };
        let _ = writeln!(
            o,
            r#"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{stroke}"/>"#,
            width - right
        );
        let label = if r >= 1.0 {
            format!("{r:.0}x")
        } else {
            format!("{r}x")
        };
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            left - 6.0,
            yy + 4.0
        );
        e += 1;
    }
    // bars
    let base = y(1.0);
    for (gi, (name, vs)) in groups.iter().enumerate() {
        let gx = left + gi as f64 * group_w + 9.0;
        for (ai, v) in vs.iter().enumerate() {
            let failed = s.cell(name, allocs[ai]).is_some_and(|c| !c.ok());
            if failed {
                let _ = writeln!(
                    o,
                    r##"<text x="{:.1}" y="{:.1}" fill="#c00" text-anchor="middle" font-weight="bold">x<title>{} {}: failed</title></text>"##,
                    gx + ai as f64 * bar_w + (bar_w - 2.0) / 2.0,
                    base - 4.0,
                    esc(name),
                    esc(allocs[ai])
                );
            }
            let Some(v) = v else { continue };
            let yy = y(*v);
            let (y0, h) = if yy < base {
                (yy, base - yy)
            } else {
                (base, yy - base)
            };
            let _ = writeln!(
                o,
                r#"<rect x="{:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {v:.2}x</title></rect>"#,
                gx + ai as f64 * bar_w,
                bar_w - 2.0,
                h.max(0.5),
                COLORS[ai % COLORS.len()],
                esc(name),
                esc(allocs[ai])
            );
        }
        let cx = gx + (group_w - 18.0) / 2.0;
        let ly = top + plot_h + 12.0;
        let _ = writeln!(
            o,
            r#"<text x="{cx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-40 {cx:.1} {ly:.1})">{}</text>"#,
            esc(name)
        );
    }
    // legend
    let ly = height - 18.0;
    let _ = writeln!(
        o,
        r##"<text x="{:.1}" y="{ly:.1}" fill="#c00">x = failed or checksum mismatch</text>"##,
        left + allocs.len() as f64 * 110.0
    );
    for (ai, a) in allocs.iter().enumerate() {
        let lx = left + ai as f64 * 110.0;
        let _ = writeln!(
            o,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 10.0,
            COLORS[ai % COLORS.len()],
            lx + 16.0,
            esc(a)
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunRecord;

    #[test]
    fn renders_bars_and_legend() {
        let rec = |w: &str, a: &str, t: f64| RunRecord {
            run: 0,
            workload: w.into(),
            allocator: a.into(),
            wall_s: t,
            cpu_s: t,
            maxrss_kib: 1,
            checksum: Some("1".into()),
            error: None,
        };
        let runs = vec![rec("w<1>", "glibc", 2.0), rec("w<1>", "mimalloc", 1.0)];
        let s = Summary::from_runs(
            &["w<1>".to_string()],
            &["glibc".to_string(), "mimalloc".to_string()],
            &runs,
        );
        let svg = render(&s);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("w&lt;1&gt; mimalloc: 0.50x"));
        assert!(svg.contains(">mimalloc</text>"));
    }
}
