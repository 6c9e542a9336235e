//! What the management plane and the routing shard share to act and to
//! watch: the command path and the event ring. One `Arc` of it is handed
//! to both at start-up.

use super::command_link::CommandLink;

#[derive(Default)]
pub struct Control {
    pub commands: CommandLink,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }
}
