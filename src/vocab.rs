//! The shared vocabulary: small types that several layers need (the process, the data
//! plane, the table, the config), kept below all of them so that none imports another one
//! back to name them.

pub mod activity;
pub mod checks;
pub(crate) mod html;
pub(crate) mod in_task;
pub mod out;
pub mod priority;
pub mod tls;

pub use priority::Priority;
