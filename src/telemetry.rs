//! Structured logs with `tracing`: text or JSON on stderr; the access log is the
//! `flowgate::access` target, off unless `[log] access = true`.

use tracing_subscriber::EnvFilter;

use crate::config::{Log, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured level.
/// Safe to call more than once (later calls do nothing), so tests can share a process.
pub fn init(log: &Log) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::builder().parse(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match log.format {
        LogFormat::Text => builder.with_target(true).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}
