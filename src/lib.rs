//! flowgate: a Layer-7 proxy that lets an active-active service survive the loss of a
//! whole region.
//!
//! A proxy runs in every region in front of that region's origins, serves its share of
//! the traffic locally and forwards the rest to peer regions, following a fleet-wide
//! traffic table. This crate is both the proxy (`flowgate serve`) and the tools that steer
//! the fleet.
//!
//! # Layout
//!
//! - Data plane: [`server`] binds the listeners, runs connections (HTTP/1.1, h2c, TLS) and
//!   drains on shutdown; [`proxy`] is the request path: [`proxy::route`] picks the origin,
//!   `proxy::target` the region (from the table's row, health and capacity) and runs the
//!   attempts, [`proxy::balance`] the endpoint (p2c, outlier ejection, slow start),
//!   [`proxy::forward`] talks to it over pooled connections; [`proxy::headers`] keeps the
//!   header hygiene; [`proxy::peer`] and [`proxy::bypass`] reach other regions through
//!   their load balancer or around it; [`proxy::health`] probes everything;
//!   [`proxy::retry`] holds the retry budget.
//! - Traffic table: [`table`] parses and validates it, [`table::compile`] turns it into
//!   per-origin pickers, [`table::store`] holds the one in force (arc-swap).
//! - Control plane: [`control`] applies pushed tables (version rules, safety checks,
//!   persistence in [`control::persist`], history) and reloads the config on SIGHUP;
//!   [`admin`] is the admin listener that exposes it (tables, status, metrics, health).
//! - Observability: [`metrics`] (Prometheus) and [`telemetry`] (logs).
//! - Configuration: [`config`] turns the TOML file into a validated [`config::Config`].
//! - The command line: [`cli`]; [`demo`] runs three regions and an exercise in one process.

#![forbid(unsafe_code)]

pub mod admin;
pub mod autopilot;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod fleet;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod store;
pub mod table;
pub mod telemetry;
pub mod vocab;
pub mod wire;
