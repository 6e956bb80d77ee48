//! The exporter's bounded backlog: messages formatted and waiting for room
//! in librdkafka (its window), oldest first. Past the bound the oldest are
//! dropped; the caller counts them.

use std::collections::VecDeque;

/// Number of channels (metric, event, meta).
pub const CHANNELS: usize = 3;
/// Buffers of sent messages kept for the next ones (no allocation per
/// message while librdkafka's window is full).
const SPARE_MAX: usize = 256;
/// Buffers larger than this are freed rather than kept.
const SPARE_BYTES_MAX: usize = 4096;

/// One formatted message: key and payload in one allocation.
#[derive(Debug)]
pub struct Pending {
    /// The channel's index.
    pub channel: usize,
    buf: Vec<u8>,
    key_len: usize,
}

impl Pending {
    /// A message of `channel` with `key` and `payload`.
    pub fn new(channel: usize, key: &[u8], payload: &[u8]) -> Self {
        Self::in_buffer(
            Vec::with_capacity(key.len() + payload.len()),
            channel,
            key,
            payload,
        )
    }

    /// As [`new`](Self::new), in `buf` (emptied first).
    fn in_buffer(mut buf: Vec<u8>, channel: usize, key: &[u8], payload: &[u8]) -> Self {
        buf.clear();
        buf.extend_from_slice(key);
        buf.extend_from_slice(payload);
        Self {
            channel,
            buf,
            key_len: key.len(),
        }
    }

    /// The message key.
    pub fn key(&self) -> &[u8] {
        &self.buf[..self.key_len]
    }

    /// The message payload.
    pub fn payload(&self) -> &[u8] {
        &self.buf[self.key_len..]
    }

    /// Bytes it takes against the bound.
    pub fn len(&self) -> u64 {
        self.buf.len() as u64
    }
}

/// Messages waiting, with their count and bytes per channel.
#[derive(Debug, Default)]
pub struct Backlog {
    items: VecDeque<Pending>,
    bytes: u64,
    /// Messages waiting, per channel.
    pub messages_of: [u64; CHANNELS],
    /// Bytes waiting, per channel.
    pub bytes_of: [u64; CHANNELS],
    /// Buffers of messages already handed on, for reuse.
    spare: Vec<Vec<u8>>,
}

impl Backlog {
    /// A message of `channel` with `key` and `payload`, in a spare buffer
    /// when there is one.
    pub fn pending(&mut self, channel: usize, key: &[u8], payload: &[u8]) -> Pending {
        match self.spare.pop() {
            Some(buf) => Pending::in_buffer(buf, channel, key, payload),
            None => Pending::new(channel, key, payload),
        }
    }

    /// Keeps the buffer of `p`, which has been handed on, for a later
    /// message.
    pub fn recycle(&mut self, p: Pending) {
        if self.spare.len() < SPARE_MAX && p.buf.capacity() <= SPARE_BYTES_MAX {
            self.spare.push(p.buf);
        }
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Messages waiting.
    pub fn len(&self) -> u64 {
        self.items.len() as u64
    }

    /// The oldest message.
    pub fn front(&self) -> Option<&Pending> {
        self.items.front()
    }

    /// Removes and returns the oldest message.
    pub fn pop_front(&mut self) -> Option<Pending> {
        let p = self.items.pop_front()?;
        self.bytes -= p.len();
        self.messages_of[p.channel] -= 1;
        self.bytes_of[p.channel] -= p.len();
        Some(p)
    }

    /// Appends `p` so that, with `others` messages and `other_bytes` bytes
    /// held elsewhere (in flight), at most `max_messages` and `max_bytes`
    /// wait in all. Makes room by dropping the oldest waiting messages; when
    /// that is not enough (what is in flight fills the bound), or when `p`
    /// alone is over `max_bytes`, `p` itself is dropped. Calls `dropped` with the
    /// channel of each message dropped.
    pub fn push_bounded(
        &mut self,
        p: Pending,
        (others, other_bytes): (u64, u64),
        (max_messages, max_bytes): (u64, u64),
        mut dropped: impl FnMut(usize),
    ) {
        if p.len() > max_bytes {
            // It would never fit: do not empty the backlog for it.
            dropped(p.channel);
            return;
        }
        let over = |b: &Self| {
            others + b.len() + 1 > max_messages || other_bytes + b.bytes + p.len() > max_bytes
        };
        while over(self) {
            match self.pop_front() {
                Some(old) => dropped(old.channel),
                None => break,
            }
        }
        if over(self) {
            dropped(p.channel);
            return;
        }
        self.bytes += p.len();
        self.messages_of[p.channel] += 1;
        self.bytes_of[p.channel] += p.len();
        self.items.push_back(p);
    }

    /// Empties the backlog; calls `dropped` with each message's channel.
    pub fn clear(&mut self, mut dropped: impl FnMut(usize)) {
        while let Some(p) = self.pop_front() {
            dropped(p.channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ch: usize, n: u8) -> Pending {
        Pending::new(ch, b"k", &[n; 9])
    }

    #[test]
    fn drops_the_oldest_past_the_message_bound() {
        let mut b = Backlog::default();
        let mut dropped = [0u64; CHANNELS];
        for n in 0..10u8 {
            b.push_bounded(msg(usize::from(n % 2), n), (2, 20), (6, 1000), |c| {
                dropped[c] += 1
            });
        }
        assert_eq!(b.len(), 4, "6 in all, 2 of them in flight");
        assert_eq!(dropped, [3, 3, 0]);
        let first = b.pop_front().expect("one");
        assert_eq!(first.payload(), &[6u8; 9][..], "the newest are kept");
        assert_eq!(first.key(), b"k");
        // Its buffer serves the next message, which reads as its own.
        let buf = first.buf.as_ptr();
        b.recycle(first);
        let again = b.pending(2, b"key", b"pay");
        assert_eq!(again.buf.as_ptr(), buf);
        assert_eq!(
            (again.key(), again.payload(), again.len()),
            (&b"key"[..], &b"pay"[..], 6)
        );
        assert_eq!(b.messages_of, [1, 2, 0]);
        assert_eq!(b.bytes, 30);
        assert_eq!(b.bytes_of, [10, 20, 0]);
    }

    #[test]
    fn byte_bound_and_a_message_that_never_fits() {
        let mut b = Backlog::default();
        let mut dropped = 0;
        for n in 0..5 {
            b.push_bounded(msg(0, n), (0, 0), (100, 25), |_| dropped += 1);
        }
        assert_eq!((b.len(), b.bytes, dropped), (2, 20, 3));
        // Too big even for an empty backlog: dropped alone.
        b.push_bounded(Pending::new(2, b"", &[0; 26]), (0, 0), (100, 25), |c| {
            assert_eq!(c, 2);
            dropped += 1;
        });
        assert_eq!((b.len(), dropped), (2, 4));
        // In flight fills the bound: the new one is dropped after the rest.
        b.push_bounded(msg(0, 9), (100, 0), (100, 25), |_| dropped += 1);
        assert_eq!((b.len(), dropped), (0, 7));
        assert_eq!(b.messages_of, [0, 0, 0]);
        b.push_bounded(msg(1, 1), (0, 0), (100, 25), |_| dropped += 1);
        let mut cleared = Vec::new();
        b.clear(|c| cleared.push(c));
        assert_eq!(cleared, [1]);
        assert!(b.is_empty());
        assert_eq!(b.bytes, 0);
    }
}
