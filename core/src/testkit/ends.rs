//! The two ends of the test net's traffic: each client's application ([`App`], which the
//! client pulls upstream bytes from and hands downstream bytes to) and the relay's exit
//! ([`Exit`], which records upstream bytes and may echo them).

use std::collections::{BTreeMap, VecDeque};
use std::vec::Vec;

use crate::client::{Chunk, Delivery, SendCredits, Upstream};
use crate::credit::{ExitCredit, ExitUpstream};
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
    /// Nodes the relay reported blamed: (interval, exchange, who, why).
    pub blamed: Vec<(u32, u64, crate::blame::Culprit, crate::blame::BlameKind)>,
    /// A connection that always has more to send (a bulk sender): once `pending` is
    /// empty, every pull fills the buffer with `0x5a` bytes for it, holding no memory.
    pub endless: Option<ConnId>,
    /// Downstream bytes received and not yet reported taken, per connection.
    pub unread: BTreeMap<ConnId, u32>,
    /// Downstream bytes handed over in the client's last turn, taken once it ends.
    arrived: BTreeMap<ConnId, u32>,
    /// The application stopped reading: it reports nothing taken.
    pub stalled: bool,
    /// Added to every report of bytes taken (a malicious owner grants what it never took).
    pub inflate: u32,
    /// Upstream credit grants delivered, per connection (what the client added).
    pub granted: BTreeMap<ConnId, u64>,
    /// Connections the last pull found without upstream credit (their bytes wait).
    blocked: Vec<ConnId>,
    /// Bytes sent of the `endless` connection.
    pub endless_sent: u64,
}

impl App {
    /// Takes the bytes handed over in the client's last turn (they are reported at the
    /// next pull); false if there were none.
    pub(super) fn take_arrived(&mut self) -> bool {
        let any = !self.arrived.is_empty();
        for (conn, n) in core::mem::take(&mut self.arrived) {
            *self.unread.entry(conn).or_default() += n;
        }
        any
    }
}

impl Upstream for App {
    fn next_chunk(&mut self, buf: &mut [u8], credit: SendCredits<'_>) -> Option<Chunk> {
        if !self.stalled {
            if let Some((conn, bytes)) = self.unread.pop_first() {
                let bytes = bytes.saturating_add(self.inflate);
                return Some(Chunk::Read { conn, bytes });
            }
        }
        self.blocked.clear();
        // The first connection with credit; one without keeps its bytes, in order.
        let mut at = None;
        for (i, (conn, _)) in self.pending.iter().enumerate() {
            if self.blocked.contains(conn) {
                continue;
            }
            if credit.of(*conn) > 0 {
                at = Some(i);
                break;
            }
            self.blocked.push(*conn);
        }
        if let Some((conn, mut data)) = at.and_then(|i| self.pending.remove(i)) {
            let n = data.len().min(buf.len()).min(credit.of(conn));
            buf[..n].copy_from_slice(&data[..n]);
            if n < data.len() {
                data.drain(..n);
                self.pending.insert(at.unwrap_or(0), (conn, data));
            }
            return Some(Chunk::Data { conn, len: n });
        }
        if let Some(conn) = self.endless {
            let n = buf.len().min(credit.of(conn));
            if n > 0 {
                buf[..n].fill(0x5a);
                self.endless_sent += n as u64;
                return Some(Chunk::Data { conn, len: n });
            }
            self.blocked.push(conn);
        }
        if let Some(conn) = self.closing.pop_front() {
            return Some(Chunk::Close { conn });
        }
        self.aborting.pop_front().map(|conn| Chunk::Abort { conn })
    }

    fn pending(&self) -> usize {
        // Only what may go now: a connection without credit waits without asking for room.
        let endless = match self.endless {
            Some(conn) if !self.blocked.contains(&conn) => crate::MAX_CELL_LENGTH,
            _ => 0,
        };
        endless
            + self
                .pending
                .iter()
                .filter(|(conn, _)| !self.blocked.contains(conn))
                .map(|(_, d)| d.len())
                .sum::<usize>()
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
    /// Sprung traps: (interval, exchange, slot, bit, trap bytes not zero).
    pub sprung: Vec<(u32, u64, u16, u32, u32)>,
    /// Downstream credit per connection: replies go only within it.
    pub credit: BTreeMap<ConnId, ExitCredit>,
    /// The most credit any connection held.
    pub most_credit: u32,
    /// Upstream credit per connection (what its owner may still send, what the
    /// destination took and was not granted back).
    pub up: BTreeMap<ConnId, ExitUpstream>,
    /// Connections whose destination stopped reading: their upstream bytes wait here.
    pub destination_stalled: Vec<ConnId>,
    /// Upstream bytes per connection the destination has not taken yet.
    pub unread: BTreeMap<ConnId, usize>,
    /// The most upstream bytes any connection had waiting at the exit.
    pub most_unread: usize,
    /// Upstream grants waiting to go downstream (ahead of replies).
    pub grants: VecDeque<(ConnId, u32)>,
    /// Every upstream grant sent, per connection.
    pub granted: BTreeMap<ConnId, u64>,
    /// Connections whose owner sent beyond its credit.
    pub overdrawn: Vec<ConnId>,
}

impl Exit {
    /// A connection was opened: its upstream starts at the window.
    pub fn opened_up(&mut self, conn: ConnId) {
        self.up.insert(conn, ExitUpstream::new());
        self.unread.remove(&conn);
        self.grants.retain(|(c, _)| *c != conn);
    }

    /// `len` upstream bytes of `conn` arrived: within the owner's credit, taken by the
    /// destination at once unless it stalled.
    pub fn arrived(&mut self, conn: ConnId, len: usize) {
        let Some(up) = self.up.get_mut(&conn) else {
            return;
        };
        if !up.received(len as u32) {
            self.overdrawn.push(conn);
        }
        let unread = self.unread.entry(conn).or_default();
        *unread += len;
        self.most_unread = self.most_unread.max(*unread);
        self.destination_reads();
    }

    /// Every destination that reads takes every upstream byte waiting; grants follow.
    pub fn destination_reads(&mut self) {
        for (conn, unread) in self.unread.iter_mut() {
            if self.destination_stalled.contains(conn) {
                continue;
            }
            let Some(up) = self.up.get_mut(conn) else {
                continue;
            };
            up.took(core::mem::take(unread) as u32);
            if let Some(bytes) = up.grant() {
                self.grants.push_back((*conn, bytes));
                *self.granted.entry(*conn).or_default() += u64::from(bytes);
            }
        }
    }

    /// The owner granted `bytes` on `conn`.
    pub fn grant(&mut self, conn: ConnId, bytes: u32) {
        let c = self.credit.entry(conn).or_default();
        c.grant(bytes);
        self.most_credit = self.most_credit.max(c.available());
    }
}

impl Downstream for Exit {
    fn has_data(&self) -> bool {
        !self.replies.is_empty() || !self.grants.is_empty()
    }

    fn next_chunk(&mut self, buf: &mut [u8]) -> Option<DownChunk> {
        if let Some((conn, bytes)) = self.grants.pop_front() {
            return Some(DownChunk::Grant { conn, bytes });
        }
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
            *app.arrived.entry(conn).or_default() += data.len() as u32;
        }
        Delivery::Close { conn } => app.closed.push(conn),
        Delivery::Grant { conn, bytes } => {
            *app.granted.entry(conn).or_default() += u64::from(bytes);
        }
    }
}
