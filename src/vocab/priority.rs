//! How much a request matters when the proxy must refuse some: read from config (the
//! default) and from a request header (the shedder), so it lives below both.

use serde::Deserialize;

/// How much a request matters when the proxy must refuse some.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low = 0,
    #[default]
    Normal = 1,
    High = 2,
    Critical = 3,
}

impl Priority {
    pub(crate) fn parse(v: &[u8]) -> Option<Priority> {
        match v {
            b"low" | b"0" => Some(Priority::Low),
            b"normal" | b"1" => Some(Priority::Normal),
            b"high" | b"2" => Some(Priority::High),
            b"critical" | b"3" => Some(Priority::Critical),
            _ => None,
        }
    }
}
