//! What the relay reports about itself: the periodic log line, the status page's board and
//! the metrics, all read from the core relay and the exits, never changing them.

use super::*;

/// The status page's board, its probe, and where the document is published.
pub(super) struct StatusFeed {
    pub(super) board: Board,
    pub(super) probe: ExchangeProbe,
    pub(super) publish: tokio::sync::watch::Sender<Arc<str>>,
}

/// Milliseconds since the Unix epoch.
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Counter values last added to the metrics, so each report adds only what is new.
#[derive(Default)]
pub(super) struct Reported {
    exchanges: u64,
    up: u64,
    down: u64,
    refused: u64,
    failed: u64,
}

/// Counters at one moment, for rates.
pub(super) struct Snapshot {
    at: tokio::time::Instant,
    exchanges: u64,
    up: u64,
    down: u64,
}

impl Snapshot {
    pub(super) fn take(hub: &Hub) -> Self {
        Snapshot {
            at: tokio::time::Instant::now(),
            exchanges: hub.relay.exchanges_decoded(),
            up: hub.exits.stats.up_bytes,
            down: hub.exits.stats.down_bytes,
        }
    }
}

impl Hub {
    /// What the relay waits for, if it runs no interval.
    pub(super) fn waiting_text(&self) -> Option<String> {
        if self.relay.interval().is_some() {
            return None;
        }
        Some(match self.relay.waiting_for() {
            Waiting::Trustees { connected, needed } => {
                format!("waiting for trustees: {connected} of {needed} connected")
            }
            Waiting::Clients { connected, needed } => format!(
                "waiting for clients: {connected} connected, {needed} needed (--min-clients)"
            ),
            _ => "setting up an interval".to_string(),
        })
    }

    /// Adds a sample to the status board and publishes the board's document.
    pub(super) fn publish_status(&mut self) {
        let counters = Counters {
            exchanges: self.relay.exchanges_decoded(),
            up_bytes: self.exits.stats.up_bytes,
            down_bytes: self.exits.stats.down_bytes,
            online: Online {
                clients: self.relay.connected_clients() as u64,
                trustees: self.relay.connected_trustees() as u64,
            },
            interval: self.relay.interval().map(|(i, n)| (i, n as u64)),
            reserved_slots: self.relay.reserved_slots() as u64,
            exit: ExitFigures {
                open: self.exits.open_connections() as u64,
                refused: self.exits.policy.refused(),
                failed: self.exits.policy.failed(),
                refused_at_caps: self.exits.stats.refused_cap,
            },
            state: self.waiting_text().unwrap_or_else(|| "running".to_string()),
        };
        if let Some(s) = &mut self.status {
            let now = unix_ms();
            s.board.sample(now, counters);
            let _ = s.publish.send(Arc::from(s.board.json(now)));
        }
    }

    /// Adds an event to the status board, if there is one.
    pub(super) fn status_event(
        &mut self,
        kind: &str,
        level: &str,
        text: String,
        node: Option<PeerId>,
    ) {
        if let Some(s) = &mut self.status {
            let mut e = status::Event::new(unix_ms(), kind, level, text);
            e.node = node.map(|p| p.to_string());
            s.board.event(e);
        }
    }

    pub(super) fn log_stats(&self, last: &Snapshot, now: &Snapshot) {
        let secs = (now.at - last.at).as_secs_f64().max(1e-6);
        let state = match self.relay.interval() {
            Some((i, n)) => format!(
                "interval {i} with {}, {} reserved",
                count(n as u64, "client"),
                count(self.relay.reserved_slots() as u64, "slot")
            ),
            None => self.waiting_text().unwrap_or_default(),
        };
        let refused = self.exits.policy.refused();
        let failed = self.exits.policy.failed();
        let adm = self.admission.stats();
        info!(
            "{:.0} exchanges/s, up {}/s, down {}/s, {}, {}, {state}, {}{}{}{}{}{}",
            (now.exchanges - last.exchanges) as f64 / secs,
            human((now.up - last.up) as f64 / secs),
            human((now.down - last.down) as f64 / secs),
            count(self.relay.connected_clients() as u64, "client"),
            count(self.relay.connected_trustees() as u64, "trustee"),
            count(self.exits.open_connections() as u64, "exit connection"),
            if refused > 0 {
                format!(", {refused} refused by exit policy (allow with --allow-private-exit)")
            } else {
                String::new()
            },
            if failed > 0 {
                format!(
                    ", {} failed (no such host, refused or timed out)",
                    count(failed, "exit connection")
                )
            } else {
                String::new()
            },
            if self.exits.stats.refused_cap > 0 {
                format!(
                    ", {} refused at the exit connection caps",
                    self.exits.stats.refused_cap
                )
            } else {
                String::new()
            },
            if self.handshakes_refused > 0 {
                format!(
                    ", {} refused (nodes of another configuration?)",
                    count(self.handshakes_refused, "handshake")
                )
            } else {
                String::new()
            },
            if adm.replayed + adm.source_full + adm.all_full + adm.handshake_late + adm.hello_late
                > 0
            {
                format!(", {adm}")
            } else {
                String::new()
            },
        );
    }

    /// Brings the metrics up to date (cheap: counters add what is new, gauges are set).
    pub(super) fn record_metrics(&mut self, link_queue: usize) {
        let r = &mut self.reported;
        let ex = self.relay.exchanges_decoded();
        crate::metrics::exchanges(ex - r.exchanges);
        r.exchanges = ex;
        let s = self.exits.stats;
        crate::metrics::bytes_up(s.up_bytes - r.up);
        crate::metrics::bytes_down(s.down_bytes - r.down);
        (r.up, r.down) = (s.up_bytes, s.down_bytes);
        let refused = self.exits.policy.refused() + s.refused_cap;
        crate::metrics::exit_refused(refused - r.refused);
        r.refused = refused;
        let failed = self.exits.policy.failed();
        crate::metrics::exit_failed(failed - r.failed);
        r.failed = failed;
        let (interval, online) = self.relay.interval().unwrap_or((0, 0));
        crate::metrics::interval(u64::from(interval));
        crate::metrics::online_clients(online as u64);
        crate::metrics::reserved_slots(self.relay.reserved_slots() as u64);
        crate::metrics::exit_connections(self.exits.open_connections() as u64);
        crate::metrics::queue_depth("relay_link_events", link_queue as u64);
        crate::metrics::queue_depth("exit_down_bytes", self.exits.queued_bytes());
    }
}

/// Formats a byte rate.
pub fn human(bytes_per_sec: f64) -> String {
    if bytes_per_sec >= 1e6 {
        format!("{:.1} MB", bytes_per_sec / 1e6)
    } else if bytes_per_sec >= 1e3 {
        format!("{:.1} kB", bytes_per_sec / 1e3)
    } else {
        format!("{bytes_per_sec:.0} B")
    }
}
