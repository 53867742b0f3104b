//! belfry-step: the one step shape of belfry's sans-IO state machines
//! (docs/architecture.md, "One step shape").
//!
//! Every state machine — the common coin and its share collectors, the
//! broadcast `Node`, the `ReplicaCore` — answers one input with a
//! [`Step`]: outputs for the layer above, in the order they were produced;
//! messages to send; and faults it detected. A layer that drives a
//! sub-protocol takes the sub-protocol's step into its own with
//! [`Step::extend_with`]: the messages and faults are mapped into the
//! layer's own types and join its step, and the outputs come back for the
//! layer to act on — so how the layers compose is visible in the types
//! (`Step<Coin, Never, ShareFault>` inside `Step<Output, Outgoing, Fault>`
//! inside `Step<CoreOutput, Frame, CoreFault>`). The model is hbbft's
//! `Step` with its `extend_with` and `map`.
//!
//! A state machine that sends nothing (a share collector) uses [`Never`]
//! for its messages: the type says so, and mapping them costs nothing.

#![forbid(unsafe_code)]

/// The type of a step's messages (or outputs, or faults) when there are
/// none: no value of it exists.
pub type Never = std::convert::Infallible;

/// What a state machine asks for in response to one input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a step's messages must be sent and its outputs acted on"]
pub struct Step<O, M, F> {
    /// Outputs for the layer above, in the order they were produced.
    pub output: Vec<O>,
    /// Messages to send.
    pub messages: Vec<M>,
    /// Faults detected.
    pub faults: Vec<F>,
}

impl<O, M, F> Default for Step<O, M, F> {
    fn default() -> Self {
        Step {
            output: Vec::new(),
            messages: Vec::new(),
            faults: Vec::new(),
        }
    }
}

impl<O, M, F> Step<O, M, F> {
    /// A step with one output and nothing else.
    pub fn with_output(output: O) -> Self {
        Step {
            output: vec![output],
            ..Step::default()
        }
    }

    /// Whether the step asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.output.is_empty() && self.messages.is_empty() && self.faults.is_empty()
    }

    /// Adds an output.
    pub fn push(&mut self, output: O) {
        self.output.push(output);
    }

    /// Adds a message to send.
    pub fn send(&mut self, message: M) {
        self.messages.push(message);
    }

    /// Adds a fault.
    pub fn fault(&mut self, fault: F) {
        self.faults.push(fault);
    }

    /// Appends another step of the same state machine after this one.
    pub fn extend(&mut self, other: Self) {
        self.output.extend(other.output);
        self.messages.extend(other.messages);
        self.faults.extend(other.faults);
    }

    /// Takes a sub-protocol's step into this one: its messages and faults
    /// join this step's, mapped by `message` and `fault`; its outputs are
    /// returned, in order, for the caller to act on.
    pub fn extend_with<O2, M2, F2>(
        &mut self,
        other: Step<O2, M2, F2>,
        message: impl FnMut(M2) -> M,
        fault: impl FnMut(F2) -> F,
    ) -> Vec<O2> {
        self.messages
            .extend(other.messages.into_iter().map(message));
        self.faults.extend(other.faults.into_iter().map(fault));
        other.output
    }

    /// The same step with its outputs, messages and faults mapped.
    pub fn map<O2, M2, F2>(
        self,
        output: impl FnMut(O) -> O2,
        message: impl FnMut(M) -> M2,
        fault: impl FnMut(F) -> F2,
    ) -> Step<O2, M2, F2> {
        Step {
            output: self.output.into_iter().map(output).collect(),
            messages: self.messages.into_iter().map(message).collect(),
            faults: self.faults.into_iter().map(fault).collect(),
        }
    }
}

/// Maps a [`Never`] into any type (for the messages of a sub-protocol that
/// sends none, in [`Step::extend_with`]).
pub fn never<T>(n: Never) -> T {
    match n {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Outer {
        Inner(u8),
    }

    #[test]
    fn a_sub_protocols_messages_and_faults_join_and_its_outputs_come_back() {
        let mut outer: Step<&str, String, Outer> = Step::default();
        outer.send("first".to_string());
        let mut inner: Step<u32, u16, u8> = Step::with_output(7);
        inner.send(2);
        inner.fault(9);
        inner.push(8);
        let outputs = outer.extend_with(inner, |m| format!("m{m}"), Outer::Inner);
        assert_eq!(outputs, vec![7, 8]);
        assert_eq!(outer.messages, vec!["first".to_string(), "m2".to_string()]);
        assert_eq!(outer.faults, vec![Outer::Inner(9)]);
        assert!(outer.output.is_empty());
    }

    #[test]
    fn a_step_that_sends_nothing_says_so_in_its_type() {
        let mut outer: Step<(), u8, ()> = Step::default();
        let inner: Step<u8, Never, ()> = Step::with_output(1);
        assert_eq!(outer.extend_with(inner, never, |f| f), vec![1]);
        assert!(outer.messages.is_empty());
        let mapped = Step::<u8, Never, u8>::with_output(3).map(u16::from, never::<u8>, |f| f);
        assert_eq!(mapped.output, vec![3u16]);
        assert!(!mapped.is_empty());
        assert!(Step::<u8, u8, u8>::default().is_empty());
    }

    #[test]
    fn extend_keeps_the_order_of_everything() {
        let mut a: Step<u8, u8, u8> = Step::with_output(1);
        a.send(10);
        let mut b = Step::with_output(2);
        b.send(20);
        b.fault(30);
        a.extend(b);
        assert_eq!(a.output, vec![1, 2]);
        assert_eq!(a.messages, vec![10, 20]);
        assert_eq!(a.faults, vec![30]);
    }
}
