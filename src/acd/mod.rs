//! Automatic call distribution: agents, registrar, queues, persistence.
//!
//! The registrar is a sans-IO state machine: REGISTER in (as plain data, the
//! integrator converts from rsip), reply + `Change`s out. The routing shard
//! hands the changes to `store::Store` (redb), usually through
//! `store::GroupCommit`.

pub mod agent;
pub mod facts;
pub mod binding;
pub mod registrar;
pub mod store;

pub use agent::AgentDef;
pub use binding::{Binding, Change, ContactParam, ContactSet};
pub use registrar::{
    OverflowPolicy, RegisterOutcome, RegisterReply, RegisterRequest, Registrar, RegistrarConfig,
};
pub use store::{agents_report, GroupCommit, Store, StoreError};
