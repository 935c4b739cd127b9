//! The queue that carries events from the endpoint's driver to one connection's driver.
//!
//! Tether patch. Upstream uses `tokio::sync::mpsc::unbounded_channel` here, which allocates its
//! slots in blocks of 32 and, once a connection has received 32 events, keeps two or three such
//! blocks for the connection's whole life (tokio-rs/tokio#7355). A `ConnectionEvent` is about
//! 200 bytes, so every connection that has lived a while held 13–20 KB of empty slots: more than
//! a third of a server's memory per idle connection. This queue holds nothing while it is empty.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// A new queue: one receiver, any number of senders.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waker: None,
            senders: 1,
            receiver_alive: true,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while the lock is held leaves a queue that is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct State<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    senders: usize,
    receiver_alive: bool,
}

pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `value`, or gives it back when the receiver is gone.
    pub(crate) fn send(&self, value: T) -> Result<(), T> {
        let waker = {
            let mut state = self.shared.lock();
            if !state.receiver_alive {
                return Err(value);
            }
            state.queue.push_back(value);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            match state.senders {
                0 => state.waker.take(),
                _ => None,
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next event; `None` once every sender is gone and the queue is empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some(value) = state.queue.pop_front() {
            // Give back what a burst made the queue grow to: an idle connection keeps none. Freed
            // after the lock is released, so the sender never waits on `free`.
            let emptied = state
                .queue
                .is_empty()
                .then(|| std::mem::take(&mut state.queue));
            drop(state);
            drop(emptied);
            return Poll::Ready(Some(value));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let queued = {
            let mut state = self.shared.lock();
            state.receiver_alive = false;
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        // Events are dropped outside the lock: dropping one may run arbitrary code.
        drop(queued);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn context() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    #[test]
    fn delivers_in_order_and_wakes_a_waiting_receiver() {
        let (tx, mut rx) = channel();
        let (woken, waker) = context();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(2)));
        assert!(rx.poll_recv(&mut cx).is_pending());
    }

    #[test]
    fn keeps_no_memory_once_drained() {
        let (tx, mut rx) = channel();
        let (_, waker) = context();
        let mut cx = Context::from_waker(&waker);
        for i in 0..100 {
            tx.send(i).unwrap();
        }
        while let Poll::Ready(Some(_)) = rx.poll_recv(&mut cx) {}
        assert_eq!(rx.shared.lock().queue.capacity(), 0);
    }

    #[test]
    fn ends_when_every_sender_is_gone_after_the_last_event() {
        let (tx, mut rx) = channel();
        let (woken, waker) = context();
        let mut cx = Context::from_waker(&waker);
        let second = tx.clone();
        tx.send(7).unwrap();
        drop(tx);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(7)));
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(second);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_send_after_the_receiver_is_gone_gives_the_value_back() {
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send(3), Err(3));
    }
}
