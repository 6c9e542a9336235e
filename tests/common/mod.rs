//! Shared harness for the end-to-end tests: runs the REAL `cc-engine` binary
//! on loopback and talks to it with raw UDP, plain HTTP, and external SIP
//! tools (SIPp, sipsak, baresip) with hard timeouts.
//!
//! Rules every test follows: only 127.0.0.1; free ports chosen by binding
//! port 0 and releasing; its own temporary state dir; every wait bounded;
//! every child process killed on Drop. A missing external tool is a loud
//! failure, never a skip (the project's test command installs them).
//!
//! `CC_ENGINE_BIN` overrides the binary (debugging only); by default the
//! binary Cargo built for this test run is used.

#![allow(dead_code, unused_imports)]

mod engine;
mod http;
mod process;
mod sip;
mod sipp;
mod webdriver;

pub use engine::*;
pub use http::*;
pub use process::*;
pub use sip::*;
pub use sipp::*;
pub use webdriver::*;
