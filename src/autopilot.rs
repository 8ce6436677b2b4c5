//! `flowgate autopilot`: evacuates a failing region with no one at a terminal.
//!
//! [`judge`] turns the fleet's statuses into evidence and a reading per region.
pub mod judge;
