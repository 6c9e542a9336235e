//! What the management plane and the routing shard share to act and to
//! watch: the command path and the event ring. One `Arc` of it is handed
//! to both at start-up.

use super::command_link::CommandLink;

#[derive(Default)]
pub struct Control {
    pub commands: CommandLink,
    /// The config the engine started with: what `POST /v1/reload` reads
    /// the file again against (set once at start).
    pub started: std::sync::OnceLock<crate::config::Config>,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }
}
