//! What the management plane and the routing shard share to act and to
//! watch: the command path and the event ring. One `Arc` of it is handed
//! to both at start-up.

use super::command_link::CommandLink;
use super::events::EventRing;
use crate::acd::Store;
use crate::shard::store_thread::StoreReader;

/// Why a read of the database got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the store is not running")]
    Gone,
    #[error("the store did not answer within {} s", READ_TIMEOUT.as_secs())]
    Timeout,
}

/// Longest a handler waits for a read of the database (a commit may be
/// ahead of it).
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Default)]
pub struct Control {
    pub commands: CommandLink,
    /// The config the engine started with: what `POST /v1/reload` reads
    /// the file again against (set once at start).
    pub started: std::sync::OnceLock<crate::config::Config>,
    pub events: EventRing,
    /// Set by the routing shard while its store thread runs.
    store: std::sync::Mutex<Option<StoreReader>>,
    /// Bumped by each accepted reload (SIGHUP or `POST /v1/reload`): the
    /// shards' SIP TLS listeners read their certificate and key again
    /// before their next handshake.
    pub tls_generation: std::sync::atomic::AtomicU64,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }

    /// With a ring of `event_buffer` events (0: the default size).
    pub fn with_event_buffer(event_buffer: usize) -> Control {
        let cap = if event_buffer == 0 { super::events::RING_CAPACITY } else { event_buffer };
        Control {
            commands: CommandLink::new(),
            started: Default::default(),
            events: EventRing::new(cap),
            store: Default::default(),
            tls_generation: Default::default(),
        }
    }

    /// The routing shard's store thread, or `None` when it stops.
    pub fn set_store(&self, reader: Option<StoreReader>) {
        if let Ok(mut s) = self.store.lock() {
            *s = reader;
        }
    }

    /// Runs `f` on the store thread and waits (bounded) for its result.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Result<T, ReadError> {
        let reader = self.store.lock().ok().and_then(|s| s.clone()).ok_or(ReadError::Gone)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        reader
            .read(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| ReadError::Gone)?;
        match tokio::time::timeout(READ_TIMEOUT, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(ReadError::Gone),
            Err(_) => Err(ReadError::Timeout),
        }
    }
}
