//! Automatic call distribution: agents, registrar, queues, persistence.
//!
//! The registrar is a sans-IO state machine: REGISTER in (as plain data, the
//! integrator converts from the scanned message), reply + `Change`s out. The router
//! (`router::Router`) is another: `CallFact`s in, `Decision`s and `StoreOp`s
//! out. `routing::Routing` drives both and the group commit, sans-IO: it
//! emits the `StoreOp`s to commit, which the routing shard's store thread
//! applies to `store::Store` (redb).

pub mod agent;
pub mod binding;
pub mod cdr;
pub mod command;
pub mod facts;
pub mod feature;
pub mod liveness;
pub mod registrar;
pub mod router;
pub mod queue_log;
pub mod retention;
pub mod routing;
pub mod stats;
pub mod store;

pub use agent::AgentDef;
pub use binding::{Binding, Change, ContactParam, ContactSet};
pub use cdr::{parse_since, AgentPersist, Cdr, Disposition, LiveCall, Pause, RouterRestore, StoreOp};
pub use registrar::{
    OverflowPolicy, RegisterOutcome, RegisterReply, RegisterRequest, Registrar, RegistrarConfig,
};
pub use routing::Routing;
pub use router::{contacts_of, Router, RouterError, RouterEvent, RouterOutput, RouterSnapshot};
pub use store::{agents_report, CdrCursor, cdrs_report, queue_log_report, GroupCommit, Store, StoreError};
