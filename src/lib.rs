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
//! Layers read top to bottom: a module imports from the layers below it and from its
//! own layer without a cycle, never from a layer above (`.ci/layers.py` fails CI on an
//! import cycle between sibling modules).
//!
//! 1. **Processes.** `main.rs` dispatches the command line; [`server`] binds the
//!    listeners, runs connections (HTTP/1.1, h2c, TLS) and drains on shutdown; [`demo`]
//!    runs three regions and an exercise in one process; [`autopilot`] is the operator-less
//!    evacuation loop with its own listener.
//! 2. **Control and admin.** `admin` is the admin listener (tables, status, metrics,
//!    dashboard); [`control`] puts pushed tables in force (version rules, safety checks,
//!    persistence, history, catch-up through peers or the store) and reloads the config on
//!    SIGHUP; [`fleet`] holds the commands that steer every proxy (push, status, evacuate,
//!    restore, exercise) and their planner and gates; `store` is the fleet's state in
//!    etcd.
//! 3. **Data plane.** [`proxy`] is the request path in named phases: filter, route, choose
//!    a region (`proxy::choose`), run the attempts (`proxy::attempt`), pick an endpoint
//!    (`proxy::balance`), forward over pooled connections (`proxy::forward`,
//!    `proxy::pool`), respond and record; beside it the peers, bypass, health probes,
//!    retries, shedding and header hygiene ([`proxy::headers`]).
//! 4. **Table.** `wire` is the JSON of the admin API, one type per document shared by the
//!    server and its clients; [`table`] parses and validates the traffic table,
//!    [`table::route`] compiles the routes, [`table::compile`] turns a table into
//!    per-origin pickers and [`table::store`] holds the one in force (arc-swap).
//! 5. **Configuration and vocabulary.** [`config`] turns the TOML file into a validated
//!    [`config::Config`]; [`cli`] declares the commands; `metrics` (Prometheus) and
//!    [`telemetry`] (logs) are what everything reports to; `vocab` holds the small types
//!    several layers share (priority, the connection-activity guard, TLS from PEM files,
//!    name and address checks, the HTML escaper).

#![forbid(unsafe_code)]

pub(crate) mod admin;
pub mod autopilot;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod fleet;
pub(crate) mod metrics;
pub mod proxy;
pub mod server;
pub(crate) mod store;
pub mod table;
pub mod telemetry;
pub(crate) mod vocab;
pub use vocab::out;
pub(crate) mod wire;
