//! The two ends of the test net's traffic: each client's application ([`App`], which the
//! client pulls upstream bytes from and hands downstream bytes to) and the relay's exit
//! ([`Exit`], which records upstream bytes and may echo them).

use std::collections::{BTreeMap, VecDeque};
use std::vec::Vec;

use crate::client::{Chunk, Delivery, Upstream};
use crate::credit::ExitCredit;
use crate::relay::{DownChunk, Downstream};
use crate::wire::ConnId;

/// Application side of one client: bytes waiting per connection, bytes received.
#[derive(Debug, Default)]
pub struct App {
    /// Bytes to send, in order.
    pub pending: VecDeque<(ConnId, Vec<u8>)>,
    /// Connections to close once their bytes are sent.
    pub closing: VecDeque<ConnId>,
    /// Connections to abort once their bytes are sent.
    pub aborting: VecDeque<ConnId>,
    /// Downstream bytes received per connection.
    pub received: BTreeMap<ConnId, Vec<u8>>,
    /// Connections the exit closed.
    pub closed: Vec<ConnId>,
    /// Connections reported lost.
    pub lost: Vec<ConnId>,
    /// Cells of this client's the relay reported disrupted (interval, exchange).
    pub disrupted: Vec<(u32, u64)>,
    /// Nodes the relay reported blamed: (interval, exchange, role, index, kind).
    pub blamed: Vec<(u32, u64, u8, u16, u8)>,
    /// A connection that always has more to send (a bulk sender): once `pending` is
    /// empty, every pull fills the buffer with `0x5a` bytes for it, holding no memory.
    pub endless: Option<ConnId>,
    /// Downstream bytes received and not yet reported taken, per connection.
    pub unread: BTreeMap<ConnId, u32>,
    /// The application stopped reading: it reports nothing taken.
    pub stalled: bool,
    /// Added to every report of bytes taken (a malicious owner grants what it never took).
    pub inflate: u32,
}

impl Upstream for App {
    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<Chunk> {
        if !self.stalled {
            if let Some((conn, bytes)) = self.unread.pop_first() {
                let bytes = bytes.saturating_add(self.inflate);
                return Some(Chunk::Read { conn, bytes });
            }
        }
        if let Some((conn, mut data)) = self.pending.pop_front() {
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            if n < data.len() {
                data.drain(..n);
                self.pending.push_front((conn, data));
            }
            return Some(Chunk::Data { conn, len: n });
        }
        if let Some(conn) = self.endless {
            buf.fill(0x5a);
            return Some(Chunk::Data {
                conn,
                len: buf.len(),
            });
        }
        if let Some(conn) = self.closing.pop_front() {
            return Some(Chunk::Close { conn });
        }
        self.aborting.pop_front().map(|conn| Chunk::Abort { conn })
    }

    fn pending(&self) -> usize {
        let endless = if self.endless.is_some() {
            crate::MAX_CELL_LENGTH
        } else {
            0
        };
        endless + self.pending.iter().map(|(_, d)| d.len()).sum::<usize>()
    }
}

/// The exit of the relay: records upstream, optionally echoes.
#[derive(Debug, Default)]
pub struct Exit {
    /// Upstream bytes per connection.
    pub upstream: BTreeMap<ConnId, Vec<u8>>,
    /// How often each connection was opened.
    pub opened: BTreeMap<ConnId, usize>,
    /// Connections the owner finished.
    pub closed: Vec<ConnId>,
    /// Connections the owner aborted.
    pub aborted: Vec<ConnId>,
    /// Replies waiting to go downstream (`None`: close).
    pub replies: VecDeque<(ConnId, Option<Vec<u8>>)>,
    /// Echo every upstream byte and close back.
    pub echo: bool,
    /// Exchanges reported disrupted (not what their slot's owner signed).
    pub garbled: usize,
    /// The disrupted exchanges: (interval, exchange).
    pub garbled_at: Vec<(u32, u64)>,
    /// Valid accusations the relay took: (interval, exchange, bit).
    pub accused: Vec<(u32, u64, u32)>,
    /// Downstream credit per connection: replies go only within it.
    pub credit: BTreeMap<ConnId, ExitCredit>,
    /// The most credit any connection held.
    pub most_credit: u32,
}

impl Exit {
    /// The owner granted `bytes` on `conn`.
    pub fn grant(&mut self, conn: ConnId, bytes: u32) {
        let c = self.credit.entry(conn).or_default();
        c.grant(bytes);
        self.most_credit = self.most_credit.max(c.available());
    }
}

impl Downstream for Exit {
    fn has_data(&self) -> bool {
        !self.replies.is_empty()
    }

    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<DownChunk> {
        // The first reply of a connection with credit; a connection without credit keeps
        // its replies (in order) at the destination.
        let mut blocked: Vec<ConnId> = Vec::new();
        let at = self.replies.iter().position(|(conn, data)| {
            if blocked.contains(conn) {
                return false;
            }
            let ok = data.is_none() || self.credit.get(conn).is_none_or(|c| c.available() > 0);
            if !ok {
                blocked.push(*conn);
            }
            ok
        })?;
        let (conn, data) = self.replies.remove(at)?;
        let Some(mut data) = data else {
            return Some(DownChunk::Close { conn });
        };
        let credit = self.credit.entry(conn).or_default();
        let n = data.len().min(buf.len()).min(credit.available() as usize);
        credit.spend(n as u32);
        buf[..n].copy_from_slice(&data[..n]);
        if n < data.len() {
            data.drain(..n);
            self.replies.insert(at, (conn, Some(data)));
        }
        Some(DownChunk::Data { conn, len: n })
    }
}

/// Hands one delivery of a client to its application.
pub(super) fn deliver(app: &mut App, d: Delivery<'_>) {
    match d {
        Delivery::Data { conn, data } => {
            app.received
                .entry(conn)
                .or_default()
                .extend_from_slice(data);
            *app.unread.entry(conn).or_default() += data.len() as u32;
        }
        Delivery::Close { conn } => app.closed.push(conn),
    }
}
