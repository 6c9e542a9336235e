//! The path of an operator's command from the management thread to the
//! routing executor and back.
//!
//! The HTTP handler queues `(id, Command)` here and awaits a oneshot; the
//! routing shell's command task is woken (glommio accepts wake-ups from
//! foreign threads, as the store thread's mailbox does), feeds each one to
//! the integrator and answers with what `Effect::CommandDone` carried. The
//! lock is taken once per command, never per SIP message, and only for a
//! queue push or pop, so the routing executor never waits on HTTP.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::acd::command::{Command, CommandResult};

/// How long a handler waits for the routing shard's answer (503 beyond).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Commands queued and not yet taken by the routing shard; more are
/// refused rather than piled up behind a stalled executor.
pub const MAX_QUEUED: usize = 1024;

#[derive(Default)]
struct Inner {
    queued: VecDeque<(u64, Command)>,
    waiting: HashMap<u64, oneshot::Sender<CommandResult>>,
    waker: Option<Waker>,
    closed: bool,
}

/// Shared by the management thread (asker) and the routing shell (doer).
#[derive(Default)]
pub struct CommandLink {
    next_id: AtomicU64,
    inner: Mutex<Inner>,
}

/// Why a command got no answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("the routing shard did not answer within {} s", COMMAND_TIMEOUT.as_secs())]
    Timeout,
    #[error("too many commands are waiting for the routing shard")]
    Busy,
    #[error("the routing shard is not running")]
    Gone,
}

impl CommandLink {
    pub fn new() -> CommandLink {
        CommandLink::default()
    }

    /// Sends `cmd` to the routing shard and waits (bounded) for its answer.
    pub async fn ask(&self, cmd: Command) -> Result<CommandResult, CommandError> {
        let rx = self.submit(cmd)?;
        let id = rx.0;
        match tokio::time::timeout(COMMAND_TIMEOUT, rx.1).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(CommandError::Gone),
            Err(_) => {
                // A late answer then finds no one waiting and is dropped.
                if let Ok(mut i) = self.inner.lock() {
                    i.waiting.remove(&id);
                }
                Err(CommandError::Timeout)
            }
        }
    }

    /// Queues `cmd` and wakes the routing shell; the receiver gets the answer.
    pub fn submit(
        &self,
        cmd: Command,
    ) -> Result<(u64, oneshot::Receiver<CommandResult>), CommandError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let waker = {
            let mut i = self.inner.lock().map_err(|_| CommandError::Gone)?;
            if i.closed {
                return Err(CommandError::Gone);
            }
            if i.queued.len() >= MAX_QUEUED {
                return Err(CommandError::Busy);
            }
            i.queued.push_back((id, cmd));
            i.waiting.insert(id, tx);
            i.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok((id, rx))
    }

    /// The routing shell's side: the next command, or `None` once closed.
    /// One task awaits this (one waker is kept).
    pub async fn next(&self) -> Option<(u64, Command)> {
        poll_fn(|cx| {
            let Ok(mut i) = self.inner.lock() else {
                return Poll::Ready(None);
            };
            let i = &mut *i;
            crate::shard::mailbox::poll_next(&mut i.queued, i.closed, &mut i.waker, cx)
        })
        .await
    }

    /// The routing shell's answer to command `id`.
    pub fn answer(&self, id: u64, result: CommandResult) {
        let tx = self
            .inner
            .lock()
            .ok()
            .and_then(|mut i| i.waiting.remove(&id));
        match tx {
            Some(tx) => {
                let _ = tx.send(result);
            }
            None => tracing::debug!(id, "command answered after its asker gave up"),
        }
    }

    /// The routing shard stops: queued and future commands fail at once.
    pub fn close(&self) {
        let waker = match self.inner.lock() {
            Ok(mut i) => {
                i.closed = true;
                i.queued.clear();
                // Dropping the senders fails their askers with `Gone`.
                i.waiting.clear();
                i.waker.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_answered_by_id() {
        let link = CommandLink::new();
        let (id, mut rx) = link.submit(Command::Unpause { agent: "a".into() }).unwrap();
        let got = futures_lite::future::block_on(link.next()).unwrap();
        assert_eq!(got, (id, Command::Unpause { agent: "a".into() }));
        link.answer(
            id,
            CommandResult::NotFound {
                what: "agent a".into(),
            },
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            CommandResult::NotFound {
                what: "agent a".into()
            }
        );
    }

    #[test]
    fn closing_fails_waiting_askers() {
        let link = CommandLink::new();
        let (_, mut rx) = link.submit(Command::Unpause { agent: "a".into() }).unwrap();
        link.close();
        assert!(rx.try_recv().is_err());
        assert_eq!(futures_lite::future::block_on(link.next()), None);
        assert!(matches!(
            link.submit(Command::Unpause { agent: "a".into() }),
            Err(CommandError::Gone)
        ));
    }

    #[test]
    fn the_queue_is_bounded() {
        let link = CommandLink::new();
        let mut keep = Vec::new();
        for _ in 0..MAX_QUEUED {
            keep.push(link.submit(Command::Unpause { agent: "a".into() }).unwrap());
        }
        assert!(matches!(
            link.submit(Command::Unpause { agent: "a".into() }),
            Err(CommandError::Busy)
        ));
    }
}
