//! The core's step (belfry's one step shape, [`belfry_broadcast::coin::step::Step`]):
//! what one input asks for. The broadcast node's step is taken into it with
//! `extend_with` (`drive.rs`), as the node takes the coin's.

use super::*;

/// What one input asks for: its [`CoreOutput`]s in order, the frames to
/// send and the faults found. The durable outputs — writes, entries
/// appended, heads — (and the sequencer's changes,
/// [`ReplicaCore::take_sequencer_update`]) must be durable before the
/// frames are sent and the timers armed. The [`crate::host::Host`] gathers
/// the steps of a turn and does exactly that.
pub type CoreStep = belfry_broadcast::coin::step::Step<CoreOutput, Frame, CoreFault>;

/// One output of the core's step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreOutput {
    /// A broadcast-layer durable write.
    Write(Durable),
    /// A log entry appended (entries come out in log order).
    Appended(Entry),
    /// A tree head signed, or installed by catch-up.
    Head(SignedTreeHead),
    /// A timer to arm (a local-clock deadline).
    Timer(Micros, CoreTimer),
    /// Ready digests the hold-back rule held back in a batch (for the
    /// simulator's M7; only with `sim-hooks`).
    #[cfg(feature = "sim-hooks")]
    HeldBack(Vec<[u8; 32]>),
}

/// A frame to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// To peers.
    Peer(Target, Vec<u8>),
    /// To a client.
    Client(ClientId, Vec<u8>),
}

/// The core's step read by kind, and built by it.
pub trait CoreStepExt {
    /// Frames to peers, in order.
    fn to_peers(&self) -> impl Iterator<Item = (Target, &[u8])>;
    /// Frames to clients, in order.
    fn to_clients(&self) -> impl Iterator<Item = (ClientId, &[u8])>;
    /// Log entries appended, in order.
    fn appended(&self) -> impl Iterator<Item = &Entry>;
    /// Adds a frame for peers.
    fn to_peer(&mut self, to: Target, frame: Vec<u8>);
    /// Adds a frame for a client.
    fn to_client(&mut self, client: ClientId, frame: Vec<u8>);
    /// Asks for a timer at `at`.
    fn timer(&mut self, at: Micros, timer: CoreTimer);
}

impl CoreStepExt for CoreStep {
    fn to_peers(&self) -> impl Iterator<Item = (Target, &[u8])> {
        self.messages.iter().filter_map(|f| match f {
            Frame::Peer(to, frame) => Some((*to, frame.as_slice())),
            Frame::Client(..) => None,
        })
    }

    fn to_clients(&self) -> impl Iterator<Item = (ClientId, &[u8])> {
        self.messages.iter().filter_map(|f| match f {
            Frame::Client(c, frame) => Some((*c, frame.as_slice())),
            Frame::Peer(..) => None,
        })
    }

    fn appended(&self) -> impl Iterator<Item = &Entry> {
        self.output.iter().filter_map(|o| match o {
            CoreOutput::Appended(e) => Some(e),
            _ => None,
        })
    }

    fn to_peer(&mut self, to: Target, frame: Vec<u8>) {
        self.send(Frame::Peer(to, frame));
    }

    fn to_client(&mut self, client: ClientId, frame: Vec<u8>) {
        self.send(Frame::Client(client, frame));
    }

    fn timer(&mut self, at: Micros, timer: CoreTimer) {
        self.push(CoreOutput::Timer(at, timer));
    }
}

impl ReplicaCore {
    /// Encodes a message for peers and sends it; its size in bytes.
    ///
    /// Every peer message is bounded well under `max_frame` by its page
    /// limits, so a frame that fails to encode is a local bug: the replica
    /// stops with an error ([`crate::host::HostError::Poisoned`]) rather
    /// than drop the message and go on without it.
    pub(super) fn send_peer(&mut self, to: Target, m: &PeerMessage, out: &mut CoreStep) -> usize {
        let encoded = wire::encode(m).map(|frame| Frame::Peer(to, frame));
        self.send_frame(encoded, "a message to peers failed to encode", out)
    }

    /// Sends an encoded frame and returns its size; a frame that failed to
    /// encode poisons the replica with `why` (see `send_peer`).
    pub(super) fn send_frame(
        &mut self,
        encoded: Result<Frame, FrameError>,
        why: &'static str,
        out: &mut CoreStep,
    ) -> usize {
        match encoded {
            Ok(frame) => {
                let len = match &frame {
                    Frame::Peer(_, b) | Frame::Client(_, b) => b.len(),
                };
                out.send(frame);
                len
            }
            Err(_) => {
                self.poison(why);
                0
            }
        }
    }
}
