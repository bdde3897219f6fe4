//! Between the two directions of a connection: the requests still waiting for their responses.
//!
//! Kafka answers the requests of one connection in the order they were sent, so a queue is enough:
//! the request side pushes before the bytes leave for the broker, the response side pops and checks
//! the correlation id. A response nobody asked for, or out of order, ends the connection.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::rewrite::Action;

/// One request whose response has not come back yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub correlation_id: i32,
    pub api_key: i16,
    pub api_version: i16,
    pub action: Action,
}

/// The pending requests of one connection, oldest first.
#[derive(Debug, Default)]
pub struct Inflight {
    // Both directions live in one task, so the lock is never contended; a Mutex only because the
    // session future must be Send.
    queue: Mutex<VecDeque<Pending>>,
}

/// A response that does not match the oldest pending request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("response with correlation id {0} while no request is pending")]
    Unsolicited(i32),
    #[error("response with correlation id {got} while {expected} is the oldest pending request")]
    OutOfOrder { expected: i32, got: i32 },
}

impl Inflight {
    pub fn push(&self, pending: Pending) {
        self.queue.lock().expect("never poisoned").push_back(pending);
    }

    /// Takes the oldest pending request, which `correlation_id` must answer.
    pub fn answer(&self, correlation_id: i32) -> Result<Pending, OrderError> {
        let mut queue = self.queue.lock().expect("never poisoned");
        match queue.front() {
            None => Err(OrderError::Unsolicited(correlation_id)),
            Some(p) if p.correlation_id != correlation_id => {
                Err(OrderError::OutOfOrder { expected: p.correlation_id, got: correlation_id })
            }
            Some(_) => Ok(queue.pop_front().expect("front exists")),
        }
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
        Pending { correlation_id, api_key: 3, api_version: 12, action: Action::Forward }
    }

    #[test]
    fn answers_in_order_and_refuses_strangers() {
        let q = Inflight::default();
        assert_eq!(q.answer(1), Err(OrderError::Unsolicited(1)));
        q.push(pending(1));
        q.push(pending(2));
        assert_eq!(q.answer(2), Err(OrderError::OutOfOrder { expected: 1, got: 2 }));
        assert_eq!(q.answer(1).unwrap().correlation_id, 1);
        assert_eq!(q.answer(2).unwrap().correlation_id, 2);
        assert!(q.is_empty());
    }
}
