//! Numbers and times as the dashboard shows them. The page's script redraws the same
//! figures every second, so shares, rates, error ratios and uptimes are written here
//! exactly as their twins in `dashboard.js` write them: the snapshot and the live page
//! read alike.

/// `60%`, or `33.3%` when not a whole percent.
pub(super) fn pct(share: f64) -> String {
    let p = share * 100.0;
    if (p - p.round()).abs() < 0.05 { format!("{:.0}%", p.round()) } else { format!("{p:.1}%") }
}

/// A rate: one decimal below 10, whole numbers above.
pub(super) fn rate(v: f64) -> String {
    if v < 10.0 { format!("{v:.1}") } else { format!("{:.0}", v.round()) }
}

pub(super) fn error_pct(ratio: f64) -> String {
    format!("{:.2}%", ratio * 100.0)
}

/// An uptime in its two largest units: `2d 1h`, `1h 2m`, `59s`.
pub(super) fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// The time of day, UTC, of a moment in seconds since the epoch.
pub(super) fn clock(unix: u64) -> String {
    let s = unix % 86400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}
