//! The checks serde cannot express, run over the `Config` as read. Each section's own
//! checks live beside its struct; this runs them in file order, with the checks that span
//! sections (a peer named as this region, a route to an unknown origin, two listeners on
//! one address), and makes the file's relative paths absolute on the way.

use super::Config;
use super::report::Report;
use crate::vocab::checks::check_name;

pub(super) fn validate(cfg: &mut Config, report: &mut Report<'_>) {
    cfg.file = report.file().to_owned();
    check_region(cfg, report);
    cfg.table = cfg.table.take().map(|t| report.absolute(&t));
    cfg.listen.check(report);
    cfg.admin.check(report);
    cfg.listen.check_addresses(cfg.admin.listen, report);
    for (name, origin) in &cfg.origins {
        origin.check(name, report);
    }
    let own_region = report.was_read("region").then_some(cfg.region.as_str());
    for (name, peer) in &mut cfg.peers {
        peer.check(name, own_region, report);
    }
    check_routes(cfg, report);
    cfg.timeouts.check(report);
    cfg.limits.check(report);
    cfg.health.check(report);
    cfg.outlier.check(report);
    cfg.balance.check(report);
    cfg.retry.check(report);
    cfg.forwarding.check(report);
    cfg.bypass.check(report);
    cfg.overload.check(report);
    if let Some(store) = &mut cfg.store {
        for (field, message) in store.check(report.base()) {
            report.error(field, message);
        }
    }
    cfg.log.check(report);
}

/// The region is required: it picks this proxy's row of the traffic table.
fn check_region(cfg: &Config, report: &mut Report<'_>) {
    if !report.given("region") {
        report.error("region", "missing field `region`");
    } else if report.was_read("region")
        && let Err(why) = check_name(&cfg.region)
    {
        report.error("region", format!("invalid region name {:?}: {why}", cfg.region));
    }
}

/// Routes are checked at their place in the file, which the unread ones leave gaps in.
fn check_routes(cfg: &Config, report: &mut Report<'_>) {
    for (i, route) in report.read_items("routes").into_iter().zip(&cfg.routes) {
        route.check(i, &cfg.origins, report);
    }
}
