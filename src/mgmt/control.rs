//! What the management plane and the routing shard share to act and to
//! watch: the command path and the event ring. One `Arc` of it is handed
//! to both at start-up.

use super::command_link::CommandLink;
use super::events::EventRing;

#[derive(Default)]
pub struct Control {
    pub commands: CommandLink,
    pub events: EventRing,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    /// With a ring of `event_buffer` events (0: the default size).
    pub fn with_event_buffer(event_buffer: usize) -> Control {
        let cap = if event_buffer == 0 { super::events::RING_CAPACITY } else { event_buffer };
        Control { commands: CommandLink::new(), events: EventRing::new(cap) }
    }
}
