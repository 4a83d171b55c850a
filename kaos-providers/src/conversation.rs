//! [`Conversation`]: a request's messages, with their token estimate kept as they change.

use std::ops::{Deref, DerefMut, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Message;

/// Not known: the messages were changed through [`DerefMut`].
const UNKNOWN: u64 = u64::MAX;

/// The messages of a [`ModelRequest`](crate::ModelRequest), oldest first: a `Vec<Message>` (it
/// dereferences to one, and serializes as one) that keeps the sum of its messages'
/// [`Message::estimated_tokens`], so that estimating a request's input costs the same whatever
/// the length of the conversation.
///
/// The methods of its own — [`push`](Conversation::push), [`pop`](Conversation::pop),
/// [`truncate`](Conversation::truncate), [`split_off`](Conversation::split_off),
/// [`drain_front`](Conversation::drain_front), [`extend`](Extend::extend) — keep the estimate
/// up to date in time proportional to what they change; any other change, through
/// `&mut Vec<Message>`, marks it unknown, and the next estimate counts every message once.
///
/// ```
/// use kaos_providers::{Conversation, Message};
/// let mut conversation = Conversation::from(vec![Message::user("x".repeat(40))]);
/// assert_eq!(conversation.estimated_tokens(), 14);
/// conversation.push(Message::assistant("y".repeat(8)));
/// assert_eq!(conversation.estimated_tokens(), 20);
/// conversation[0] = Message::user("short"); // through `&mut Vec<Message>`: counted again
/// assert_eq!(conversation.estimated_tokens(), 12);
/// assert_eq!(conversation, vec![Message::user("short"), Message::assistant("y".repeat(8))]);
/// ```
#[derive(Default)]
pub struct Conversation {
    messages: Vec<Message>,
    /// The sum of the messages' estimates, or [`UNKNOWN`].
    estimate: AtomicU64,
}

impl Conversation {
    /// An empty conversation.
    pub fn new() -> Self {
        Self::default()
    }

    /// The messages, as a vector.
    pub fn into_vec(self) -> Vec<Message> {
        self.messages
    }

    /// The sum of the messages' [`Message::estimated_tokens`]: O(1) unless the messages were
    /// changed through `&mut Vec<Message>` since the last call.
    pub fn estimated_tokens(&self) -> u64 {
        match self.estimate.load(Ordering::Relaxed) {
            UNKNOWN => {
                let sum = self.messages.iter().map(Message::estimated_tokens).sum::<u64>().min(UNKNOWN - 1);
                self.estimate.store(sum, Ordering::Relaxed);
                sum
            }
            known => known,
        }
    }

    /// Appends a message.
    pub fn push(&mut self, message: Message) {
        self.add(message.estimated_tokens());
        self.messages.push(message);
    }

    /// Removes the last message.
    pub fn pop(&mut self) -> Option<Message> {
        let message = self.messages.pop()?;
        self.sub(message.estimated_tokens());
        Some(message)
    }

    /// Keeps the first `len` messages.
    pub fn truncate(&mut self, len: usize) {
        if len < self.messages.len() {
            let gone: u64 = self.messages[len..].iter().map(Message::estimated_tokens).sum();
            self.sub(gone);
            self.messages.truncate(len);
        }
    }

    /// Splits off the messages from `at` on.
    ///
    /// # Panics
    /// When `at > len`, like [`Vec::split_off`].
    #[allow(clippy::panic)]
    pub fn split_off(&mut self, at: usize) -> Vec<Message> {
        let tail = self.messages.split_off(at);
        self.sub(tail.iter().map(Message::estimated_tokens).sum());
        tail
    }

    /// Removes the first `count` messages (all of them when there are fewer).
    pub fn drain_front(&mut self, count: usize) {
        let count = count.min(self.messages.len());
        let gone: u64 = self.messages[..count].iter().map(Message::estimated_tokens).sum();
        self.sub(gone);
        self.messages.drain(..count);
    }

    /// Removes the messages in `range` and returns them.
    pub fn drain(&mut self, range: impl RangeBounds<usize>) -> Vec<Message> {
        let gone: Vec<Message> = self.messages.drain(range).collect();
        self.sub(gone.iter().map(Message::estimated_tokens).sum());
        gone
    }

    /// Removes every message.
    pub fn clear(&mut self) {
        self.messages.clear();
        self.estimate.store(0, Ordering::Relaxed);
    }

    fn add(&mut self, tokens: u64) {
        let estimate = self.estimate.get_mut();
        if *estimate != UNKNOWN {
            *estimate = estimate.saturating_add(tokens).min(UNKNOWN - 1);
        }
    }

    fn sub(&mut self, tokens: u64) {
        let estimate = self.estimate.get_mut();
        if *estimate != UNKNOWN {
            *estimate = estimate.saturating_sub(tokens);
        }
    }
}

impl Deref for Conversation {
    type Target = Vec<Message>;

    fn deref(&self) -> &Vec<Message> {
        &self.messages
    }
}

impl DerefMut for Conversation {
    /// The messages, to change at will: the estimate is counted again when next asked for.
    fn deref_mut(&mut self) -> &mut Vec<Message> {
        *self.estimate.get_mut() = UNKNOWN;
        &mut self.messages
    }
}

impl From<Vec<Message>> for Conversation {
    fn from(messages: Vec<Message>) -> Self {
        Self { messages, estimate: AtomicU64::new(UNKNOWN) }
    }
}

impl From<Conversation> for Vec<Message> {
    fn from(conversation: Conversation) -> Self {
        conversation.messages
    }
}

impl FromIterator<Message> for Conversation {
    fn from_iter<I: IntoIterator<Item = Message>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl Extend<Message> for Conversation {
    fn extend<I: IntoIterator<Item = Message>>(&mut self, iter: I) {
        for message in iter {
            self.push(message);
        }
    }
}

impl<'a> IntoIterator for &'a Conversation {
    type Item = &'a Message;
    type IntoIter = std::slice::Iter<'a, Message>;

    fn into_iter(self) -> Self::IntoIter {
        self.messages.iter()
    }
}

impl IntoIterator for Conversation {
    type Item = Message;
    type IntoIter = std::vec::IntoIter<Message>;

    fn into_iter(self) -> Self::IntoIter {
        self.messages.into_iter()
    }
}

impl Clone for Conversation {
    fn clone(&self) -> Self {
        Self {
            messages: self.messages.clone(),
            estimate: AtomicU64::new(self.estimate.load(Ordering::Relaxed)),
        }
    }
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.messages.fmt(f)
    }
}

impl PartialEq for Conversation {
    fn eq(&self, other: &Self) -> bool {
        self.messages == other.messages
    }
}

impl PartialEq<Vec<Message>> for Conversation {
    fn eq(&self, other: &Vec<Message>) -> bool {
        self.messages == *other
    }
}

impl PartialEq<Conversation> for Vec<Message> {
    fn eq(&self, other: &Conversation) -> bool {
        *self == other.messages
    }
}

impl Serialize for Conversation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.messages.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Conversation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Message>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;
    use crate::ToolCall;

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            "[a-z ]{0,40}".prop_map(Message::user),
            "[a-z ]{0,40}".prop_map(Message::assistant),
            ("[a-z]{1,8}", "[a-z ]{0,20}").prop_map(|(name, text)| Message::Assistant {
                content: text,
                tool_calls: vec![ToolCall::new("c", name, serde_json::json!({"a": 1}))],
            }),
            ("[a-z]{1,8}", "[a-z ]{0,40}").prop_map(|(name, text)| Message::tool("c", name, text, false)),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(Message),
        Pop,
        Truncate(usize),
        SplitOff(usize),
        DrainFront(usize),
        Drain(usize, usize),
        Extend(Vec<Message>),
        Set(usize, Message),
        Clear,
        Estimate,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => message().prop_map(Op::Push),
            1 => Just(Op::Pop),
            1 => (0usize..12).prop_map(Op::Truncate),
            1 => (0usize..12).prop_map(Op::SplitOff),
            1 => (0usize..4).prop_map(Op::DrainFront),
            1 => (0usize..6, 0usize..6).prop_map(|(a, b)| Op::Drain(a.min(b), a.max(b))),
            1 => prop::collection::vec(message(), 0..3).prop_map(Op::Extend),
            1 => (0usize..12, message()).prop_map(|(i, m)| Op::Set(i, m)),
            1 => Just(Op::Clear),
            2 => Just(Op::Estimate),
        ]
    }

    proptest! {
        /// Whatever changes a conversation goes through, its estimate is the sum of its
        /// messages' estimates, and it reads, compares and serializes as its messages.
        #[test]
        fn the_estimate_follows_every_change(start in prop::collection::vec(message(), 0..8), ops in prop::collection::vec(op(), 0..40)) {
            let mut conversation = Conversation::from(start.clone());
            let mut plain = start;
            for op in ops {
                match op {
                    Op::Push(m) => { conversation.push(m.clone()); plain.push(m); }
                    Op::Pop => prop_assert_eq!(conversation.pop(), plain.pop()),
                    Op::Truncate(n) => { conversation.truncate(n); plain.truncate(n); }
                    Op::SplitOff(n) => {
                        if n <= plain.len() {
                            prop_assert_eq!(conversation.split_off(n), plain.split_off(n));
                        }
                    }
                    Op::DrainFront(n) => { conversation.drain_front(n); plain.drain(..n.min(plain.len())); }
                    Op::Drain(a, b) => {
                        if b <= plain.len() {
                            prop_assert_eq!(conversation.drain(a..b), plain.drain(a..b).collect::<Vec<_>>());
                        }
                    }
                    Op::Extend(ms) => { conversation.extend(ms.clone()); plain.extend(ms); }
                    Op::Set(i, m) => {
                        if let Some(slot) = conversation.get_mut(i) { *slot = m.clone(); plain[i] = m; }
                    }
                    Op::Clear => { conversation.clear(); plain.clear(); }
                    Op::Estimate => {}
                }
                let expected: u64 = plain.iter().map(Message::estimated_tokens).sum();
                prop_assert_eq!(conversation.estimated_tokens(), expected);
                prop_assert_eq!(&conversation, &plain);
            }
            let json = serde_json::to_string(&conversation).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&plain).unwrap());
            let back: Conversation = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.estimated_tokens(), conversation.estimated_tokens());
        }
    }
}
