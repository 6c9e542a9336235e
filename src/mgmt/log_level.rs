//! The process's log filter, changeable at run time from the management
//! API (an operator turns on `debug` for a misbehaving phone without a
//! restart that would hang up every call).
//!
//! The filter is process-global (tracing's subscriber is), so is its
//! control: `main` installs it once after setting up logging.

use std::sync::{Mutex, OnceLock};

type Apply = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

struct Control {
    apply: Apply,
    current: Mutex<String>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogLevelError {
    #[error("this process has no run-time log control")]
    NotInstalled,
    #[error("not a log filter: {0}")]
    Invalid(String),
}

/// Installs the control; `apply` replaces the filter with a new spec
/// (`info`, `warn,cc_engine::sip=debug`, …) or says why it cannot.
pub fn install(current: &str, apply: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = CONTROL.set(Control { apply: Box::new(apply), current: Mutex::new(current.to_string()) });
}

/// The filter in force (None: no control installed).
pub fn current() -> Option<String> {
    let c = CONTROL.get()?;
    c.current.lock().ok().map(|g| g.clone())
}

pub fn set(spec: &str) -> Result<(), LogLevelError> {
    let c = CONTROL.get().ok_or(LogLevelError::NotInstalled)?;
    let mut cur = c.current.lock().map_err(|_| LogLevelError::NotInstalled)?;
    (c.apply)(spec).map_err(LogLevelError::Invalid)?;
    *cur = spec.to_string();
    Ok(())
}
