//! Graceful shutdown, in mini-redis's shape: one `broadcast` channel
//! announces it to every task; each task holds a clone of an `mpsc` sender
//! as a drop guard, so the node knows every task has finished when the
//! receiver sees all senders gone.

use tokio::sync::{broadcast, mpsc};

/// A task's view of the shutdown announcement.
#[derive(Debug)]
pub struct Shutdown {
    done: bool,
    notify: broadcast::Receiver<()>,
    /// Dropped when the task ends (the drop guard).
    _guard: mpsc::Sender<()>,
}

impl Shutdown {
    /// Whether shutdown was announced (as seen by `recv`).
    pub fn is_shutdown(&self) -> bool {
        self.done
    }

    /// Waits for the announcement (returns at once if it was seen).
    pub async fn recv(&mut self) {
        if self.done {
            return;
        }
        // A lagged or closed channel means the same: shut down.
        let _ = self.notify.recv().await;
        self.done = true;
    }

    /// Checks without waiting.
    pub fn poll(&mut self) -> bool {
        if !self.done {
            self.done = !matches!(
                self.notify.try_recv(),
                Err(broadcast::error::TryRecvError::Empty)
            );
        }
        self.done
    }
}

/// The node's side: announce, then wait for every task's guard.
#[derive(Debug)]
pub struct Coordinator {
    notify: broadcast::Sender<()>,
    guard: Option<mpsc::Sender<()>>,
    complete: mpsc::Receiver<()>,
}

impl Default for Coordinator {
    fn default() -> Self {
        Self::new()
    }
}

impl Coordinator {
    /// A coordinator with no task yet.
    pub fn new() -> Self {
        let (notify, _) = broadcast::channel(1);
        let (guard, complete) = mpsc::channel(1);
        Coordinator {
            notify,
            guard: Some(guard),
            complete,
        }
    }

    /// A handle for one more task.
    pub fn subscribe(&self) -> Shutdown {
        self.source().subscribe()
    }

    /// Something tasks can clone to subscribe their own sub-tasks.
    pub fn source(&self) -> Source {
        let guard = match &self.guard {
            Some(g) => g.clone(),
            // After the shutdown began: a guard nobody waits on.
            None => mpsc::channel(1).0,
        };
        Source {
            notify: self.notify.clone(),
            guard,
        }
    }

    /// Something that can announce the shutdown from elsewhere.
    pub fn trigger(&self) -> Trigger {
        Trigger(self.notify.clone())
    }

    /// Announces the shutdown and waits until every task has ended.
    pub async fn shutdown(mut self) {
        let _ = self.notify.send(());
        self.guard = None;
        let _ = self.complete.recv().await;
    }
}

/// Announces the shutdown.
#[derive(Clone, Debug)]
pub struct Trigger(broadcast::Sender<()>);

impl Trigger {
    /// Announces it (idempotent).
    pub fn fire(&self) {
        let _ = self.0.send(());
    }
}

/// Subscribes tasks (cheap to clone; holds a drop guard itself, so drop it
/// when no more tasks will be started).
#[derive(Clone, Debug)]
pub struct Source {
    notify: broadcast::Sender<()>,
    guard: mpsc::Sender<()>,
}

impl Source {
    /// A handle for one more task.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            done: false,
            notify: self.notify.subscribe(),
            _guard: self.guard.clone(),
        }
    }
}
