//! The `max_shift` safety rule: how far a push may move a row's shares at once.
//!
//! The shift of a row is half the sum of the absolute changes of its shares (the total
//! variation distance): moving 30 % of a region's traffic from one target to another is a
//! shift of 0.3, however many targets are involved. Rows are compared as they take
//! effect: an origin without its own row follows the default row, and a region without a
//! row serves itself.

use std::collections::{BTreeMap, BTreeSet};

use crate::table::{Row, Table, TableError};

fn shares(row: Option<&Row>, source: &str) -> BTreeMap<String, f64> {
    match row {
        Some(r) => {
            let sum: u64 = r.values().sum();
            r.iter().map(|(k, w)| (k.clone(), if sum == 0 { 0.0 } else { *w as f64 / sum as f64 })).collect()
        }
        None => [(source.to_owned(), 1.0)].into(),
    }
}

/// Half the sum of absolute share changes between two rows.
pub(crate) fn row_shift(old: Option<&Row>, new: Option<&Row>, source: &str) -> f64 {
    let (a, b) = (shares(old, source), shares(new, source));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.iter().map(|k| (a.get(*k).unwrap_or(&0.0) - b.get(*k).unwrap_or(&0.0)).abs()).sum::<f64>() / 2.0
}

/// Refuses `new` when any effective row moves by more than `max` against `old`.
pub(crate) fn check(old: &Table, new: &Table, max: f64) -> Result<(), TableError> {
    // A little slack so that a plan computed in floating point is not refused for 1e-12.
    let limit = max + 1e-9;
    let sources: BTreeSet<&String> = old.weights.keys().chain(new.weights.keys()).collect();
    for src in &sources {
        let s = row_shift(old.weights.get(*src), new.weights.get(*src), src);
        if s > limit {
            return Err(refusal(format!("weights.{src}"), s, max));
        }
    }
    let origins: BTreeSet<&String> = old.origins.keys().chain(new.origins.keys()).collect();
    for origin in origins {
        let (o_old, o_new) = (old.origins.get(origin), new.origins.get(origin));
        let srcs: BTreeSet<&String> = o_old
            .into_iter()
            .flat_map(|r| r.keys())
            .chain(o_new.into_iter().flat_map(|r| r.keys()))
            .collect();
        for src in srcs {
            let effective = |t: &Table, specific: Option<&BTreeMap<String, Row>>| {
                specific.and_then(|r| r.get(src)).or_else(|| t.weights.get(src)).cloned()
            };
            let s = row_shift(effective(old, o_old).as_ref(), effective(new, o_new).as_ref(), src);
            if s > limit {
                return Err(refusal(format!("origins.{origin}.{src}"), s, max));
            }
        }
    }
    Ok(())
}

fn refusal(field: String, shift: f64, max: f64) -> TableError {
    TableError { field, message: format!("shares move by {shift:.3}, more than max_shift {max}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: &[(&str, u64)]) -> Row {
        p.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn table(v: u64, rows: &[(&str, Row)]) -> Table {
        let mut t = Table::local_only();
        t.version = v;
        for (s, r) in rows {
            t.weights.insert(s.to_string(), r.clone());
        }
        t
    }

    #[test]
    fn shift_is_total_variation() {
        let a = row(&[("a", 100)]);
        let b = row(&[("a", 70), ("b", 30)]);
        assert!((row_shift(Some(&a), Some(&b), "a") - 0.3).abs() < 1e-12);
        assert!((row_shift(None, Some(&b), "a") - 0.3).abs() < 1e-12, "no row means all local");
        let c = row(&[("b", 1), ("c", 1)]);
        assert!((row_shift(Some(&a), Some(&c), "a") - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_step_over_the_limit_names_the_row() {
        let old = table(1, &[("a", row(&[("a", 100)]))]);
        let ok = table(2, &[("a", row(&[("a", 75), ("b", 25)]))]);
        let big = table(2, &[("a", row(&[("a", 50), ("b", 50)]))]);
        assert!(check(&old, &ok, 0.25).is_ok());
        let err = check(&old, &big, 0.25).unwrap_err();
        assert_eq!(err.field, "weights.a");
    }

    #[test]
    fn origin_rows_compare_against_the_default_they_replace() {
        let old = table(1, &[("a", row(&[("a", 100)]))]);
        let mut new = old.clone();
        new.version = 2;
        new.origins.insert("video".into(), [("a".to_string(), row(&[("b", 1)]))].into());
        let err = check(&old, &new, 0.5).unwrap_err();
        assert_eq!(err.field, "origins.video.a");
    }
}
