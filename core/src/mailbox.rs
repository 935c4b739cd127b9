//! A bounded queue with many senders and one receiver that holds no memory while empty: a node
//! session's command queue.
//!
//! tokio's mpsc channel allocates its shared state and a first block of 32 slots when it is
//! created: 1.3 KB on every node connection, 130 MB across 100,000 idle nodes, for a queue that
//! sees a command now and then. This is a mutex around a `VecDeque` (no allocation until the
//! first command) and two `Notify`s.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// See the module documentation. The receiver calls [`Mailbox::recv`] and, when it stops
/// receiving, [`Mailbox::close`] (through [`Mailbox::close_on_drop`]).
#[derive(Debug)]
pub(crate) struct Mailbox<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// The receiver waits here for something to arrive.
    arrived: Notify,
    /// Senders wait here for room, or for the close.
    room: Notify,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

/// The receiver has stopped: the value was not delivered, and is given back.
#[derive(Debug)]
pub(crate) struct Closed<T>(pub T);

impl<T> Mailbox<T> {
    /// A mailbox that holds at most `capacity` values (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
            }),
            capacity: capacity.max(1),
            arrived: Notify::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().expect("not poisoned")
    }

    /// Queues a value, waiting while the mailbox is full; gives it back if the receiver has
    /// stopped.
    pub async fn send(&self, value: T) -> Result<(), Closed<T>> {
        loop {
            // Registered before looking, so room made between the look and the wait wakes us.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed {
                    return Err(Closed(value));
                }
                if state.queue.len() < self.capacity {
                    state.queue.push_back(value);
                    drop(state);
                    self.arrived.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// The next value. Cancel-safe (a value is only taken by a call that returns it); for one
    /// receiver at a time. Waits forever once closed, like a branch that never fires.
    pub async fn recv(&self) -> T {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(value) = state.queue.pop_front() {
                    if state.queue.is_empty() {
                        // Idle sessions keep nothing.
                        state.queue = VecDeque::new();
                    }
                    drop(state);
                    self.room.notify_one();
                    return value;
                }
            }
            arrived.await;
        }
    }

    /// Stops the mailbox: values queued are dropped, waiting and later senders get theirs back.
    pub fn close(&self) {
        let dropped = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.queue)
        };
        drop(dropped);
        self.room.notify_waiters();
    }

    /// Closes the mailbox when the guard is dropped: the receiver holds it for as long as it
    /// receives, whichever way it stops.
    pub fn close_on_drop(&self) -> CloseOnDrop<'_, T> {
        CloseOnDrop(self)
    }
}

/// See [`Mailbox::close_on_drop`].
#[derive(Debug)]
pub(crate) struct CloseOnDrop<'a, T>(&'a Mailbox<T>);

impl<T> Drop for CloseOnDrop<'_, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn values_arrive_in_order() {
        let mailbox = Mailbox::new(4);
        for i in 0..4 {
            mailbox.send(i).await.unwrap();
        }
        for i in 0..4 {
            assert_eq!(mailbox.recv().await, i);
        }
        assert_eq!(
            mailbox.lock().queue.capacity(),
            0,
            "an empty mailbox holds no memory"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_mailbox_makes_senders_wait_until_there_is_room() {
        let mailbox = Arc::new(Mailbox::new(2));
        mailbox.send(1).await.unwrap();
        mailbox.send(2).await.unwrap();
        let sender = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.send(3).await.map_err(|Closed(v)| v) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!sender.is_finished(), "no room: the sender waits");
        assert_eq!(mailbox.lock().queue.len(), 2);
        assert_eq!(mailbox.recv().await, 1);
        sender.await.unwrap().unwrap();
        assert_eq!(mailbox.recv().await, 2);
        assert_eq!(mailbox.recv().await, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_gives_values_back_to_waiting_and_later_senders() {
        let mailbox = Arc::new(Mailbox::new(1));
        mailbox.send("queued").await.unwrap();
        let waiting = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.send("waiting").await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(mailbox.close_on_drop());
        let Err(Closed(value)) = waiting.await.unwrap() else {
            panic!("delivered to a closed mailbox")
        };
        assert_eq!(value, "waiting");
        assert!(matches!(mailbox.send("later").await, Err(Closed("later"))));
        assert!(mailbox.lock().queue.is_empty(), "queued values dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_receive_loses_nothing() {
        let mailbox = Mailbox::new(4);
        // The receive is abandoned while it waits, as a `select!` branch is.
        let abandoned = tokio::time::timeout(Duration::from_secs(1), mailbox.recv()).await;
        assert!(abandoned.is_err());
        mailbox.send(7).await.unwrap();
        assert_eq!(mailbox.recv().await, 7);
    }

    #[tokio::test]
    async fn many_senders_one_receiver_nothing_lost() {
        let mailbox = Arc::new(Mailbox::new(2));
        let senders: Vec<_> = (0..8)
            .map(|s| {
                let mailbox = mailbox.clone();
                tokio::spawn(async move {
                    for i in 0..100 {
                        mailbox.send(s * 1000 + i).await.unwrap();
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < 800 {
            seen.push(mailbox.recv().await);
        }
        for sender in senders {
            sender.await.unwrap();
        }
        seen.sort_unstable();
        let expected: Vec<_> = (0..8)
            .flat_map(|s| (0..100).map(move |i| s * 1000 + i))
            .collect();
        assert_eq!(seen, expected);
    }
}
