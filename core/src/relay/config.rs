//! The relay's parameters: what a group and a relay instance are configured with, the
//! checks on them, and the frame limits they imply.
//!
//! Owns [`RelayConfig`] and [`min_node_frame`]. It must not hold state: everything here is
//! a function of the parameters.

use crate::bits::bitmap_len;
use crate::error::ConfigError;
use crate::policy::Policy;
use crate::time::Duration;
use crate::wire::{self, MAX_FRAME_BODY, MAX_HISTORY};
use crate::{cell_length_ok, MAX_CLIENTS, MAX_DOWNSTREAM, MAX_TRUSTEES, MAX_WINDOW, NONCE_LEN};

/// Relay parameters.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// The group id.
    pub group_id: [u8; 16],
    /// The session id.
    pub session_id: [u8; 16],
    /// Number of clients in the group.
    pub clients: u16,
    /// Number of trustees in the group.
    pub trustees: u16,
    /// Number of pseudonym slots.
    pub slots: u16,
    /// Base cell length (a newly reserved slot's cell).
    pub cell_len: usize,
    /// Longest cell an owner may ask for.
    pub max_cell_len: usize,
    /// Exchanges in flight ahead of the last decoded one.
    pub window: u16,
    /// Largest downstream payload per record.
    pub downstream_len: usize,
    /// Clients that must be connected before an interval opens.
    pub min_clients: u16,
    /// Longest pause between new exchanges while nothing is being sent or reserved; the
    /// pause grows from a sixteenth of this towards it while the net stays idle.
    pub idle_gap: Duration,
    /// Bytes per second of cells an idle net may cost the relay: in a large group an idle
    /// exchange costs every member a cell, so the longest pause grows with the group until
    /// idle exchanges stay within this budget.
    pub idle_budget: u64,
    /// Most bytes of cells one exchange may take in, every member's and trustee's together:
    /// in a large group, long cells are shortened to fit, so one exchange stays quick and
    /// the relay's buffers bounded (goodput per pad byte is about the same either way).
    pub exchange_budget: usize,
    /// A peer that leaves an exchange (or an interval's set-up) unanswered this long is
    /// dropped.
    pub exchange_timeout: Duration,
    /// How long a newly connected client waits before the running interval is ended to let
    /// it in (joiners arriving meanwhile come along).
    pub join_delay: Duration,
    /// How long an already connected node has to answer a probe when a second process
    /// says hello as the same node.
    pub probe_timeout: Duration,
    /// A reservation exchange runs at least every `period` exchanges.
    pub period: u16,
    /// Most slots one reservation exchange admits.
    pub admit: u16,
    /// Most slots reserved at once.
    pub capacity: u16,
    /// Bytes of downstream log kept for clients that reconnect: at least
    /// [`RelayConfig::min_log_len`], so the group's log window fits.
    pub log_len: usize,
    /// The group's policy: its anonymity minimum (buddy groups share losses) and the log
    /// window the trustees hold the relay to.
    pub policy: Policy,
    /// Number of the first interval (choose it so numbers are not reused across restarts).
    pub first_interval: u32,
    /// This relay instance's identity (fresh randomness per start).
    pub epoch: [u8; 16],
    /// How members that stall the group are cut and backed off.
    pub stall: super::StallConfig,
}

impl RelayConfig {
    /// Longest cell of any exchange (a long slot or a reservation bitmap).
    pub const fn max_exchange_len(&self) -> usize {
        let r = bitmap_len(self.slots as usize);
        if r > self.max_cell_len {
            r
        } else {
            self.max_cell_len
        }
    }

    /// Checks the parameters against the protocol's limits.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !cell_length_ok(self.cell_len)
            || self.max_cell_len < self.cell_len
            || self.max_cell_len > crate::MAX_CELL_LENGTH
        {
            return Err(ConfigError::CellLength);
        }
        let (c, t) = (usize::from(self.clients), usize::from(self.trustees));
        if c == 0 || c > MAX_CLIENTS || t == 0 || t > MAX_TRUSTEES || self.slots == 0 {
            return Err(ConfigError::Counts);
        }
        if self.window == 0 || usize::from(self.window) > MAX_WINDOW {
            return Err(ConfigError::Window);
        }
        if self.downstream_len == 0 || self.downstream_len > MAX_DOWNSTREAM {
            return Err(ConfigError::DownstreamLength);
        }
        if self.period < 2 || self.admit == 0 || self.capacity == 0 {
            return Err(ConfigError::Schedule);
        }
        if self.log_len < self.min_log_len() {
            return Err(ConfigError::LogWindow);
        }
        Ok(())
    }

    /// Smallest downstream log that holds the log window: its size in entries (a log entry
    /// of a record is smaller than the record's window size), and two of the largest
    /// entries for the room a ring loses where it wraps.
    pub const fn min_log_len(&self) -> usize {
        let window = self.policy.log_window.bytes;
        let window = if window > usize::MAX as u64 / 2 {
            usize::MAX / 2
        } else {
            window as usize
        };
        let largest = if self.downstream_len > crate::wire::GRANT_LEN {
            self.downstream_len
        } else {
            crate::wire::GRANT_LEN
        };
        window + 2 * (super::log::HEADER_LEN + largest)
    }

    /// Frames of a link's send queue that replays leave free: a window of requests, a
    /// start, its confirmation and a goodbye.
    pub const fn link_reserve(&self) -> usize {
        self.window as usize + 4
    }

    /// Entries of peer storage the relay needs: every client, then every trustee.
    pub const fn peers_len(&self) -> usize {
        self.clients as usize + self.trustees as usize
    }

    /// Longest frame the relay emits with these parameters.
    pub const fn max_frame_len(&self) -> usize {
        wire::FRAME_HEADER_LEN + MAX_FRAME_BODY
    }

    /// Smallest frame limit a node must declare to take part in this group.
    pub const fn min_node_frame(&self) -> usize {
        min_node_frame(self.cell_len, self.clients, self.trustees, self.slots)
    }
}

/// Smallest frame limit a node must declare to take part in a group of these sizes and
/// base cell length: the largest of a base cell, a reservation cell, an `IntervalStart`
/// and a request's fixed part.
pub const fn min_node_frame(cell_len: usize, clients: u16, trustees: u16, slots: u16) -> usize {
    let cell = wire::cell_frame_len(cell_len);
    let reserve = wire::cell_frame_len(bitmap_len(slots as usize));
    // 128 bytes of fixed fields, and the 32 of the trap point.
    let start =
        160 + bitmap_len(clients as usize) + trustees as usize * NONCE_LEN + MAX_HISTORY * 16;
    let request = 64 + wire::max_outputs_len(slots) + 1;
    let mut m = cell;
    if reserve > m {
        m = reserve;
    }
    if start > m {
        m = start;
    }
    if request > m {
        m = request;
    }
    m
}
