//! Which regions the table in force has already evacuated: no row, default or per origin,
//! sends them any traffic. An evacuation of another region must not plan traffic into one
//! (its spare capacity looks the largest exactly because it is out of service).

use std::collections::BTreeSet;

use super::shares;
use crate::table::Table;

/// The regions of `regions` that no row of `table` sends a share to (a region without a
/// row serves itself, so it is evacuated only once its own row sends it nothing).
pub(crate) fn evacuated<'a>(
    table: &Table,
    regions: impl IntoIterator<Item = &'a String>,
) -> BTreeSet<String> {
    let regions: Vec<&String> = regions.into_iter().collect();
    let mut served = BTreeSet::new();
    for src in &regions {
        let rows =
            std::iter::once(table.weights.get(*src)).chain(table.origins.values().map(|o| o.get(*src)));
        for row in rows {
            for (target, share) in shares(row, src) {
                if share > 0.0 {
                    served.insert(target);
                }
            }
        }
    }
    regions.into_iter().filter(|r| !served.contains(*r)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(json: &str) -> Table {
        serde_json::from_str(json).expect("table")
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_region_no_row_sends_traffic_to_is_evacuated() {
        let t = table(
            r#"{"version": 3, "weights": {
                "us-east-1": {"us-east-1": 50, "us-west-2": 50},
                "eu-west-1": {"us-east-1": 60, "us-west-2": 40}}}"#,
        );
        let regions = names(&["us-east-1", "us-west-2", "eu-west-1"]);
        assert_eq!(evacuated(&t, &regions), BTreeSet::from(["eu-west-1".to_owned()]));
    }

    #[test]
    fn a_region_without_a_row_serves_itself_and_an_origin_row_keeps_a_region_in() {
        let t = table(
            r#"{"version": 3, "weights": {"eu-west-1": {"us-east-1": 100}},
                "origins": {"api": {"us-east-1": {"eu-west-1": 100}}}}"#,
        );
        let regions = names(&["us-east-1", "us-west-2", "eu-west-1"]);
        assert!(evacuated(&t, &regions).is_empty(), "us-west-2 serves itself, eu-west-1 takes api");
    }
}
