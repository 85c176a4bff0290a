//! opsconsole: a terminal-first operations console. Workflows run as DAGs of processes on
//! agents, driven by a principal that owns all state and keeps history in DuckDB.
//!
//! The layout follows `DESIGN.md`: specs are validated in [`spec`], graphs evaluated in
//! [`dag`], processes run by [`agent`], state owned by [`principal`], history kept by
//! [`store`], services kept up by [`supervisor`], and the faces live in [`cli`].

pub mod agent;
pub mod bench;
pub mod cli;
pub mod dag;
pub mod exit;
pub mod failpoint;
pub mod humantime;
pub mod monitor;
pub mod out;
pub mod principal;
pub mod protocol;
pub mod spec;
pub mod store;
pub mod supervisor;
pub mod tui;
