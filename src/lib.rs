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
//!   [`proxy::headers`] keeps the header hygiene, [`proxy::forward`] talks to the origin's
//!   endpoints over pooled connections.
//! - Control plane: [`admin`] is the admin listener (health, readiness).
//! - Configuration: [`config`] turns the TOML file into a validated [`config::Config`].
//! - Observability: [`telemetry`] sets up structured logs (and the access log).
//! - The command line: [`cli`].

#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod proxy;
pub mod server;
pub mod telemetry;
