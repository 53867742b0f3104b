//! Bounded send queues with a byte budget: what the host thread hands a
//! peer's or a client's writer task. Pushing never waits — the host thread
//! must never block on the network — it fails when the queue holds its
//! budget of bytes (or frames), and the caller decides: a peer's frame is
//! dropped (the protocol recovers through re-sends and catch-up), a client
//! that does not read is disconnected.

use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The sending half (cheap to clone).
#[derive(Clone, Debug)]
pub struct QueueTx {
    tx: mpsc::Sender<Bytes>,
    bytes: Arc<AtomicUsize>,
    budget: usize,
}

/// The receiving half.
#[derive(Debug)]
pub struct QueueRx {
    rx: mpsc::Receiver<Bytes>,
    bytes: Arc<AtomicUsize>,
}

/// The queue is at its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A queue of at most `frames` frames and `budget` bytes.
pub fn queue(frames: usize, budget: usize) -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel(frames.max(1));
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        QueueTx {
            tx,
            bytes: bytes.clone(),
            budget,
        },
        QueueRx { rx, bytes },
    )
}

impl QueueTx {
    /// Queues a frame, or fails at once if the queue is full (or closed).
    /// An empty queue takes any one frame, so a budget below `max_frame`
    /// still lets every frame through (the bound is the budget plus one
    /// frame).
    pub fn try_push(&self, frame: Bytes) -> Result<(), Full> {
        let len = frame.len();
        let before = self.bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.budget {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(Full);
        }
        self.tx.try_send(frame).map_err(|_| {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            Full
        })
    }

    /// Bytes queued now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

impl QueueRx {
    /// The next frame; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let frame = self.rx.recv().await?;
        self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.bytes.load(Ordering::Acquire) == 0
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let frame = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }
}
