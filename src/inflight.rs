//! Between the two directions of a connection: the requests still waiting for their responses.
//!
//! Kafka answers the requests of one connection in the order they were sent, so a queue is enough:
//! the request side pushes before the bytes leave for the broker, the response side pops and checks
//! the correlation id. A response out of order ends the connection; one that answers no pending
//! request (a broker answering an acks=0 Produce) is set apart, for the session to drop.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::rewrite::Action;
use crate::sasl::RawTokens;

/// One request whose response has not come back yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub correlation_id: i32,
    pub api_key: i16,
    pub api_version: i16,
    pub action: Action,
    /// When it was forwarded, if the gateway times its requests (metrics on).
    pub sent: Option<std::time::Instant>,
}

/// The pending requests of one connection, oldest first.
#[derive(Debug, Default)]
pub struct Inflight {
    // Both directions live in one task, so the locks are never contended; Mutexes only because the
    // session future must be Send.
    queue: Mutex<VecDeque<Pending>>,
    /// After a SaslHandshake v0: the bare tokens the client still sends (sasl.rs).
    raw: Mutex<Option<RawTokens>>,
    /// A drain stopped the requests: no more will be pushed.
    stopped: AtomicBool,
}

/// A response that answers a pending request other than the oldest: Kafka never reorders, so the
/// pairing is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("response with correlation id {got} while {expected} is the oldest pending request")]
pub struct OrderError {
    pub expected: i32,
    pub got: i32,
}

/// What a response answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The oldest pending request.
    Pending(Pending),
    /// No request the client is waiting for: a broker that answers Produce with acks=0 sends
    /// these (librdkafka's mock does; Kafka does not). The client does not expect it either.
    Stray,
}

impl Inflight {
    pub fn push(&self, pending: Pending) {
        self.queue.lock().expect("never poisoned").push_back(pending);
    }

    /// What the oldest pending request's response needs: a bare SASL token is framed without a
    /// correlation id, and may be empty.
    pub fn next_action(&self) -> Option<Action> {
        self.queue.lock().expect("never poisoned").front().map(|p| p.action)
    }

    /// Takes the oldest pending request, a bare SASL token, whose answer of `len` bytes came back.
    pub fn answer_raw(&self, len: usize) -> Pending {
        if let Some(raw) = self.raw.lock().expect("never poisoned").as_mut() {
            raw.answered(len);
        }
        self.queue.lock().expect("never poisoned").pop_front().expect("the front is a raw token")
    }

    /// A SaslHandshake v0 was forwarded: the next requests are bare tokens.
    pub fn expect_raw(&self, tokens: RawTokens) {
        *self.raw.lock().expect("never poisoned") = Some(tokens);
    }

    /// True when the client's next frame is a bare SASL token.
    pub fn raw_next(&self) -> bool {
        self.raw.lock().expect("never poisoned").is_some_and(|tokens| tokens.left() > 0)
    }

    /// A bare SASL token went to the broker: its answer is pending.
    pub fn push_raw(&self) {
        if let Some(tokens) = self.raw.lock().expect("never poisoned").as_mut() {
            tokens.sent();
        }
        self.push(Pending { correlation_id: -1, api_key: -1, api_version: -1, action: Action::RawToken, sent: None });
    }

    /// Takes the oldest pending request if `correlation_id` answers it. A response that answers no
    /// pending request is [`Answer::Stray`]; one that answers a later one breaks the order.
    pub fn answer(&self, correlation_id: i32) -> Result<Answer, OrderError> {
        let mut queue = self.queue.lock().expect("never poisoned");
        match queue.front() {
            Some(p) if p.correlation_id == correlation_id => Ok(Answer::Pending(queue.pop_front().expect("front"))),
            Some(p) if queue.iter().any(|later| later.correlation_id == correlation_id) => {
                Err(OrderError { expected: p.correlation_id, got: correlation_id })
            }
            _ => Ok(Answer::Stray),
        }
    }

    /// The requests stopped for a drain.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Drained: the requests stopped and every one was answered.
    pub fn drained(&self) -> bool {
        self.stopped.load(Ordering::Relaxed) && self.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.lock().expect("never poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(correlation_id: i32) -> Pending {
        Pending { correlation_id, api_key: 3, api_version: 12, action: Action::Forward, sent: None }
    }

    #[test]
    fn answers_in_order_sets_strays_apart_and_refuses_reordering() {
        let q = Inflight::default();
        assert_eq!(q.answer(1), Ok(Answer::Stray), "nothing pending");
        q.push(pending(1));
        q.push(pending(2));
        assert_eq!(q.answer(2), Err(OrderError { expected: 1, got: 2 }));
        assert_eq!(q.answer(7), Ok(Answer::Stray), "an answer to an acks=0 Produce, say");
        assert_eq!(q.answer(1), Ok(Answer::Pending(pending(1))));
        assert_eq!(q.answer(2), Ok(Answer::Pending(pending(2))));
        assert!(q.is_empty() && !q.drained());
        q.stop();
        assert!(q.drained());
    }
}
