//! The integration tests, in one binary: every test drives real processes, sockets and
//! DuckDB files, and most of their time is spent waiting on them, so they run side by side
//! rather than one binary after another (and the crate, DuckDB included, is linked once).

mod common;

mod agent_chaos;
mod agent_faults;
mod agent_words;
mod agents;
mod auth;
mod callers;
mod cli;
mod clients;
mod console;
mod crash;
mod curve_zmq;
mod disk_full;
mod engine;
mod executor;
mod fair_share;
mod foreign_client;
mod interventions;
mod locations;
mod long_lines;
mod monitor_actor;
mod monitor_crash;
mod monitor_faces;
mod monitor_loop;
mod monitor_reload;
mod monitors;
mod principal_api;
mod probes;
mod processes;
mod push;
mod restart;
mod schedule;
mod services;
mod store;
mod supervision;
mod validate;
mod zmq;
mod zmq_hostile;
