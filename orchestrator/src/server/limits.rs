//! What bounds the server and each peer: a cap on connections per
//! listener, one deadline for the whole handshake (a peer trickling a byte
//! at a time cannot keep it open), and a bounded share of the decision
//! loop's queue per connection (a flooding peer waits on its own credits
//! while the others' messages go through).

use std::{
    io::{self, Read, Write},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use shadow_wire::transport::Stream;

/// A stream whose reads and writes all end by one deadline.
pub(super) struct Deadline<'a> {
    stream: &'a mut Stream,
    until: Instant,
    /// The longest a single write may wait, deadline or not.
    write: Duration,
}

impl<'a> Deadline<'a> {
    pub(super) fn new(stream: &'a mut Stream, within: Duration, write: Duration) -> Self {
        Self {
            stream,
            until: Instant::now() + within,
            write,
        }
    }

    /// Time left, or a timeout error once it has run out.
    fn left(&self) -> io::Result<Duration> {
        self.until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "handshake deadline passed"))
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?.min(self.write);
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Connections a listener serves at once.
pub(super) struct Slots {
    used: AtomicUsize,
    max: usize,
}

/// One connection's place; freed on drop.
pub(super) struct Slot(Arc<Slots>);

impl Slots {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// A place, unless all are taken.
    pub(super) fn take(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Messages of one connection that may wait for the decision loop at once.
pub(super) struct Credits {
    free: Mutex<usize>,
    returned: Condvar,
}

/// A message's place in the decision loop's queue; given back to its
/// connection when the loop drops it (after handling the message).
pub struct Credit(Arc<Credits>);

impl Credits {
    pub(super) fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new(n),
            returned: Condvar::new(),
        })
    }

    /// Waits (at most `patience`) for a credit: the reader stops reading
    /// its socket meanwhile, so a flooding peer is slowed down alone.
    pub(super) fn take(self: &Arc<Self>, patience: Duration) -> Option<Credit> {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let (mut free, _) = self
            .returned
            .wait_timeout_while(free, patience, |n| *n == 0)
            .unwrap_or_else(|p| p.into_inner());
        if *free == 0 {
            return None;
        }
        *free -= 1;
        Some(Credit(self.clone()))
    }
}

impl Drop for Credit {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_credits_are_given_back_on_drop() {
        let slots = Slots::new(2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop(a);
        assert!(slots.take().is_some());
        let credits = Credits::new(1);
        let c = credits.take(Duration::ZERO).unwrap();
        assert!(credits.take(Duration::from_millis(10)).is_none());
        let waiter = {
            let credits = credits.clone();
            std::thread::spawn(move || credits.take(Duration::from_secs(5)).is_some())
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(c);
        assert!(waiter.join().unwrap(), "a returned credit wakes the reader");
    }
}
