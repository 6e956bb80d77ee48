//! gopher-ctl: the command-line client of gala-gopher's run-time control.
//! It talks HTTP/1.1 to the agent's REST API (plain or TLS, `--url`) or to
//! its root-only Unix control socket (`--socket`); see docs/gopher-ctl.md.

// Unit tests panic on failure by design.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cli;
pub mod error;
pub mod http;
pub mod render;
pub mod run;
pub mod tls;
pub mod transport;
