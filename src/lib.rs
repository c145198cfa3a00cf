//! revokd turns signed identity events into Appwrite session revocations.
//!
//! A request flows through the modules in this order:
//!
//! - [`http`] receives `POST /hooks/{source}`, enforces limits, and responds
//!   2xx only after the store committed.
//! - [`sources`] verifies the request on its raw bytes, then decodes events.
//!   The JWT kinds check tokens against keys that [`jwks`] loads and caches.
//! - [`rules`] maps each event to jobs: an action, a target and a user.
//! - [`store`] commits events and jobs durably and hands out due jobs.
//! - [`delivery`] claims jobs, calls Appwrite through [`appwrite`], retries,
//!   and writes one [`outcome`] line per job.
//!
//! [`config`] loads and validates the TOML file, [`app`] wires the parts
//! together, and [`cli`] is the command line. [`check`] prints a config as
//! understood and probes the Appwrite targets; [`telemetry`] sets up logging. [`simulator`] is a stand-in
//! Appwrite used by [`demo`] and the tests; [`senders`] signs requests the
//! way each sender does.
//!
//! [`inspect`] implements `revokd events`, which lists stored events and
//! retries dead jobs.

pub mod app;
pub mod appwrite;
pub mod check;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod http;
pub mod inspect;
pub mod jwks;
pub mod outcome;
pub mod rules;
pub mod senders;
pub mod simulator;
pub mod sources;
pub mod store;
pub mod telemetry;
