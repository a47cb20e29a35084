//! Statistics used by the report: median, geometric mean and ratio tables.

use std::collections::BTreeMap;

/// Median of the values (mean of the two middle values for an even count).
/// Returns `None` for an empty slice. NaNs are ordered last.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Geometric mean of strictly positive, finite values; `None` if there are
/// none or any value is not positive and finite.
pub fn geomean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        return None;
    }
    let log_sum: f64 = values.iter().map(|v| v.ln()).sum();
    Some((log_sum / values.len() as f64).exp())
}

/// `value / base`, or `None` when either is missing or the base is not positive.
pub fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 && v.is_finite() && b.is_finite() => Some(v / b),
        _ => None,
    }
}

/// A table of per-(workload, allocator) values, e.g. median wall times.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Workloads in display order.
    pub workloads: Vec<String>,
    /// Allocators in display order.
    pub allocators: Vec<String>,
    cells: BTreeMap<(String, String), f64>,
}

impl Table {
    pub fn new(workloads: Vec<String>, allocators: Vec<String>) -> Self {
        Table {
            workloads,
            allocators,
            cells: BTreeMap::new(),
        }
    }

    pub fn set(&mut self, workload: &str, allocator: &str, value: f64) {
        self.cells
            .insert((workload.to_string(), allocator.to_string()), value);
    }

    pub fn get(&self, workload: &str, allocator: &str) -> Option<f64> {
        self.cells
            .get(&(workload.to_string(), allocator.to_string()))
            .copied()
    }

    /// The table of ratios of each cell to the same workload's `baseline`
    /// allocator. Cells without a value or without a baseline are absent.
    pub fn ratios_to(&self, baseline: &str) -> Table {
        let mut out = Table::new(self.workloads.clone(), self.allocators.clone());
        for w in &self.workloads {
            for a in &self.allocators {
                if let Some(r) = ratio(self.get(w, a), self.get(w, baseline)) {
                    out.set(w, a, r);
                }
            }
        }
        out
    }

    /// Geometric mean of an allocator's column over the workloads that have
    /// a value for it.
    pub fn column_geomean(&self, allocator: &str) -> Option<f64> {
        let vals: Vec<f64> = self
            .workloads
            .iter()
            .filter_map(|w| self.get(w, allocator))
            .collect();
        geomean(&vals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0, 100.0, 2.0]), Some(2.0));
    }

    #[test]
    fn geomean_values() {
        assert_eq!(geomean(&[]), None);
        let g = geomean(&[2.0, 8.0]).unwrap();
        assert!((g - 4.0).abs() < 1e-12, "{g}");
        let g = geomean(&[1.0, 10.0, 100.0]).unwrap();
        assert!((g - 10.0).abs() < 1e-9, "{g}");
        assert_eq!(geomean(&[1.0, 0.0]), None);
        assert_eq!(geomean(&[1.0, -2.0]), None);
        assert_eq!(geomean(&[f64::NAN]), None);
    }

    #[test]
    fn ratio_handles_missing() {
        assert_eq!(ratio(Some(3.0), Some(1.5)), Some(2.0));
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
    }

    #[test]
    fn ratio_table_and_column_geomean() {
        let mut t = Table::new(
            vec!["a".into(), "b".into()],
            vec!["glibc".into(), "x".into()],
        );
        t.set("a", "glibc", 2.0);
        t.set("a", "x", 1.0);
        t.set("b", "glibc", 1.0);
        t.set("b", "x", 2.0);
        let r = t.ratios_to("glibc");
        assert_eq!(r.get("a", "glibc"), Some(1.0));
        assert_eq!(r.get("a", "x"), Some(0.5));
        assert_eq!(r.get("b", "x"), Some(2.0));
        let g = r.column_geomean("x").unwrap();
        assert!((g - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ratio_table_skips_missing_baseline() {
        let mut t = Table::new(vec!["a".into(), "b".into()], vec!["m".into(), "x".into()]);
        t.set("a", "x", 3.0);
        t.set("b", "m", 2.0);
        t.set("b", "x", 1.0);
        let r = t.ratios_to("m");
        assert_eq!(r.get("a", "x"), None);
        assert_eq!(r.get("b", "x"), Some(0.5));
        assert_eq!(r.column_geomean("x"), Some(0.5));
    }
}
