//! The label values known before the first request: made at 0 when a proxy starts, so
//! every family is in the first scrape and `rate()` or an alert sees its first increase
//! (the Prometheus client leaves out a labelled family that has no child yet).
//!
//! The lists are the values the code writes: a value missing here still counts, it only
//! appears at first use. `tests/monitoring.rs` checks the first scrape against them.

use super::Metrics;

/// `retries_total{reason}`: `proxy::retry::Reason::name`.
pub(crate) const RETRY_REASONS: [&str; 3] = ["connect-failure", "reset", "retriable-status"];

/// `shed_total{reason}`: `proxy::shed::reason` for each priority, and the origin's own
/// concurrency limit.
pub(crate) const SHED_REASONS: [&str; 5] =
    ["overload-low", "overload-normal", "overload-high", "overload-critical", "origin-concurrency"];

/// `table_rejected_total{reason}`: the admin API's refusals before the table is read, and
/// `control::apply::ApplyError::reason`.
pub(crate) const REJECT_REASONS: [&str; 8] = [
    "unauthorized",
    "unsupported_media_type",
    "too_large",
    "invalid",
    "max_shift",
    "stale",
    "precondition",
    "internal",
];

/// `store_state{state}`: `wire::StoreState::name`.
pub(crate) const STORE_STATES: [&str; 3] = ["none", "connected", "disconnected"];

/// Makes the children of every fixed label value, at 0; the store starts as `none`.
pub(crate) fn preset(m: &Metrics) {
    for reason in RETRY_REASONS {
        m.retries_total.with_label_values(&[reason]);
    }
    for reason in SHED_REASONS {
        m.shed_total.with_label_values(&[reason]);
    }
    for reason in REJECT_REASONS {
        m.table_rejected_total.with_label_values(&[reason]);
    }
    for kind in ["origin", "lb", "proxies"] {
        m.probes_total.with_label_values(&[kind]);
    }
    m.set_store_state("none");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_registry_shows_every_fixed_label_value_at_zero() {
        let text = String::from_utf8(Metrics::new().unwrap().render()).unwrap();
        let families = [
            ("flowgate_retries_total", &RETRY_REASONS[..]),
            ("flowgate_shed_total", &SHED_REASONS[..]),
            ("flowgate_table_rejected_total", &REJECT_REASONS[..]),
        ];
        for (family, reasons) in families {
            for reason in reasons {
                let line = format!("{family}{{reason=\"{reason}\"}} 0");
                assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
            }
        }
        for (state, v) in [("none", 1), ("connected", 0), ("disconnected", 0)] {
            let line = format!("flowgate_store_state{{state=\"{state}\"}} {v}");
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
