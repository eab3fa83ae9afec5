//! Response times of client links, for measuring only (`dissent relay --response-times FILE`).
//!
//! What a relay sees of a client: how long after a request was queued for its link the
//! client's cell for it was read. A delay that differs between the slot's owner and the
//! other clients tells the relay who owns the slot, so `dissent bench timing` compares
//! these times (docs/security.md, "Timing the owner").
//!
//! Owns: when each client request was queued on each link, and the file of samples. One
//! line per cell read: `UNIX_MICROS PEER_INDEX MICROS` (when the cell was read, the client's
//! index, the delay). It must not touch the core or anything the protocol decides: the relay
//! makes no decision from these times.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use dissent_core::relay::PeerId;
use dissent_core::wire::{split_frame, Message};

/// Requests remembered per link (more than a window of exchanges in flight).
const PER_LINK: usize = 256;

/// The requests in flight on each client link, and the file the samples go to.
pub struct ResponseTimes {
    out: BufWriter<File>,
    /// Per link: (interval, exchange, when its request was queued), oldest first.
    issued: HashMap<u64, VecDeque<(u32, u64, Instant)>>,
    /// An instant and the Unix time in microseconds at that instant.
    origin: (Instant, u64),
    /// Lines that could not be written (the first failure is logged).
    failed: bool,
}

impl ResponseTimes {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("--response-times: cannot create {}", path.display()))?;
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Ok(ResponseTimes {
            out: BufWriter::with_capacity(64 * 1024, file),
            issued: HashMap::new(),
            origin: (Instant::now(), unix),
            failed: false,
        })
    }

    /// Notes that `frame` (a whole frame, header included) was queued on link `token` at
    /// `at`, if it is a request for a client's cell.
    pub fn queued(&mut self, token: u64, frame: &[u8], at: Instant) {
        let Ok(Some((body, _))) = split_frame(frame) else {
            return;
        };
        let Ok(Message::ClientRequest(r)) = Message::parse(body) else {
            return;
        };
        let q = self.issued.entry(token).or_default();
        if q.len() == PER_LINK {
            q.pop_front();
        }
        q.push_back((r.interval, r.exchange, at));
    }

    /// Records a sample if `body` (a frame body read from link `token` of `peer` at `at`)
    /// is a client's cell for a request queued on that link.
    pub fn read(&mut self, token: u64, peer: PeerId, body: &[u8], at: Instant) {
        let PeerId::Client(index) = peer else {
            return;
        };
        let Ok(Message::Cell {
            interval, exchange, ..
        }) = Message::parse(body)
        else {
            return;
        };
        let Some(q) = self.issued.get_mut(&token) else {
            return;
        };
        // Cells come in request order; requests older than this one went unanswered.
        while let Some(&(i, e, queued)) = q.front() {
            if (i, e) > (interval, exchange) {
                return;
            }
            q.pop_front();
            if (i, e) == (interval, exchange) {
                let micros = at.saturating_duration_since(queued).as_micros();
                let unix =
                    self.origin.1 + at.saturating_duration_since(self.origin.0).as_micros() as u64;
                if writeln!(self.out, "{unix} {index} {micros}").is_err() && !self.failed {
                    self.failed = true;
                    tracing::warn!("--response-times: cannot write a sample; dropping them");
                }
                return;
            }
        }
    }

    /// Forgets a link that closed.
    pub fn closed(&mut self, token: u64) {
        self.issued.remove(&token);
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        if self.out.flush().is_err() && !self.failed {
            self.failed = true;
            tracing::warn!("--response-times: cannot write the samples");
        }
    }
}

#[cfg(test)]
mod tests {
    // Test code only: each unwrap() is an assertion on a fixture.
    use super::*;

    use dissent_core::wire::{ClientRequest, Down, Kind};

    fn frame(msg: &Message<'_>) -> Vec<u8> {
        let mut out = vec![0u8; 1024];
        let n = msg.emit_frame(&mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn a_cell_is_timed_against_its_own_request_on_its_own_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("times");
        let mut t = ResponseTimes::create(&path).unwrap();
        let t0 = Instant::now();
        for exchange in 1..=3u64 {
            let req = frame(&Message::ClientRequest(ClientRequest {
                interval: 7,
                exchange,
                kind: Kind::Reserve,
                outputs: &[],
                down: Down::None,
            }));
            t.queued(
                1,
                &req,
                t0 + std::time::Duration::from_micros(exchange * 100),
            );
        }
        let cell = |exchange| {
            let f = frame(&Message::Cell {
                interval: 7,
                exchange,
                cell: &[0; 16],
            });
            f[4..].to_vec()
        };
        // Another link's cell is not this link's answer; exchange 1 goes unanswered.
        t.read(2, PeerId::Client(3), &cell(2), t0);
        t.read(
            1,
            PeerId::Client(3),
            &cell(2),
            t0 + std::time::Duration::from_micros(250),
        );
        t.read(
            1,
            PeerId::Trustee(0),
            &cell(3),
            t0 + std::time::Duration::from_micros(900),
        );
        t.read(
            1,
            PeerId::Client(3),
            &cell(3),
            t0 + std::time::Duration::from_micros(700),
        );
        t.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(&lines[0][1..], &["3", "50"]);
        assert_eq!(&lines[1][1..], &["3", "400"]);
    }
}
