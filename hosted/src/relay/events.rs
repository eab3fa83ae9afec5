//! Applying what the core relay decided: its events (to the exits, the log, the status page
//! and the blame evidence) and its frames (to the links), after every input.

use super::*;

impl Hub {
    /// Drains the core's events and frames after an input.
    pub(super) fn drive(&mut self) {
        loop {
            let now = self.now();
            while let Some(ev) = self.relay.poll_event(now) {
                match ev {
                    RelayEvent::Upstream { conn, open, data } => {
                        self.exits.upstream(conn, open, data)
                    }
                    RelayEvent::Close { conn } => self.exits.close(conn),
                    RelayEvent::Abort { conn } => self.exits.abort(conn),
                    RelayEvent::Grant { conn, bytes } => self.exits.grant(conn, bytes),
                    RelayEvent::Garbled { interval, exchange } => {
                        crate::metrics::garbled();
                        let text = format!(
                            "exchange {exchange} of interval {interval} was disrupted: its cell \
                             is not one its slot's owner signed (nothing of it was delivered)"
                        );
                        warn!("{text}");
                        if let Some(s) = &mut self.status {
                            let mut e = status::Event::new(unix_ms(), "garbled", "warn", text);
                            e.interval = Some(interval);
                            e.exchange = Some(exchange);
                            s.board.event(e);
                        }
                    }
                    RelayEvent::Accused {
                        interval, exchange, ..
                    } => {
                        // Neither the slot nor the bit (a reservation's bit is its slot).
                        warn!(
                            "exchange {exchange} of interval {interval} was accused by its \
                             slot's owner"
                        );
                    }
                    RelayEvent::BlameStarted { interval, exchange } => {
                        info!(
                            "blame round about exchange {exchange} of interval {interval} started"
                        );
                    }
                    RelayEvent::BlameDropped {
                        interval,
                        exchange,
                        reason,
                    } => {
                        warn!(
                            "blame round about exchange {exchange} of interval {interval} not \
                             run: {reason}"
                        );
                    }
                    RelayEvent::BlameIncomplete {
                        interval,
                        exchange,
                        absent,
                        count: rounds,
                    } => {
                        let absent: Vec<String> = (0..16u16)
                            .filter(|t| absent & 1 << t != 0)
                            .map(|t| format!("trustee {t}"))
                            .collect();
                        warn!(
                            "blame round about exchange {exchange} of interval {interval} \
                             ended without a reveal from {}: it convicts only members that \
                             refuse or convict themselves ({} without every trustee's reveal so far)",
                            absent.join(", "),
                            count(rounds, "round")
                        );
                    }
                    RelayEvent::BlameAwaiting {
                        interval,
                        exchange,
                        members,
                    } => {
                        warn!(
                            "blame round about exchange {exchange} of interval {interval} \
                             waits for {} away at its deadline (none is convicted for it; \
                             each joins no interval until it answers)",
                            count(u64::from(members), "member")
                        );
                    }
                    RelayEvent::BlameGaveUp {
                        interval,
                        exchange,
                        members,
                    } => {
                        warn!(
                            "blame round about exchange {exchange} of interval {interval} \
                             gave up waiting for {} (another round parked while {} were \
                             parked): none is convicted for it",
                            count(u64::from(members), "member"),
                            dissent_core::relay::MAX_PARKED
                        );
                    }
                    RelayEvent::BlameRestarted {
                        interval,
                        exchange,
                        client,
                    } => {
                        warn!(
                            "client {client} came back from a restart while the blame round \
                             about exchange {exchange} of interval {interval} waited for its \
                             reveal: it cannot answer; penalized, not convicted, and the round \
                             goes on without it"
                        );
                    }
                    RelayEvent::TrusteeWithoutBlame { trustee } => {
                        warn!(
                            "trustee {trustee} takes no part in blame rounds (its hello says \
                             so; no trustee this project ships does): rounds do not wait for \
                             it, and those that need its reveal end with no verdict"
                        );
                    }
                    RelayEvent::BlameEnded {
                        interval,
                        exchange,
                        verdict,
                    } => self.blame_ended(interval, exchange, verdict),
                    RelayEvent::TrapSprung {
                        interval,
                        exchange,
                        sprung,
                        ..
                    } => {
                        // Not the bit: the round that takes it up shows it to members only.
                        warn!(
                            "exchange {exchange} of interval {interval} sprang {} (a member \
                             other than its slot's owner changed its cell; a blame round \
                             takes it up)",
                            count(u64::from(sprung), "trap byte")
                        );
                    }
                    RelayEvent::IntervalStarted { interval, clients } => {
                        info!(
                            "interval {interval} started with {}",
                            count(clients as u64, "client")
                        );
                        if let Some(s) = &mut self.status {
                            let decoded = self.relay.exchanges_decoded();
                            s.board
                                .interval_started(unix_ms(), interval, clients as u64, decoded);
                        }
                    }
                    RelayEvent::IntervalEnded { interval, done } => {
                        debug!(
                            "interval {interval} ended after {}",
                            count(done, "exchange")
                        );
                        if let Some(s) = &mut self.status {
                            // Its exchanges in flight will not be decoded; the next
                            // interval's are issued only after it opened, round trips on.
                            s.probe.reset(self.relay.exchanges_decoded());
                            s.board.interval_ended(unix_ms(), interval, done);
                        }
                    }
                    RelayEvent::Dropped { peer, reason } => {
                        crate::metrics::link_events("dropped");
                        warn!("dropping {peer}: {reason}");
                        if let Some(s) = &mut self.status {
                            let mut e = status::Event::new(
                                unix_ms(),
                                "dropped",
                                "warn",
                                format!("{peer} dropped: {reason}"),
                            );
                            e.node = Some(peer.to_string());
                            s.board.event(e);
                        }
                    }
                    RelayEvent::Joined { peer } => {
                        if let Some(link) = self.relay.link_of(peer) {
                            self.set_record_limit(link.0, peer);
                        }
                        debug!("{peer} joined")
                    }
                    RelayEvent::Penalized {
                        peer,
                        why,
                        back_off,
                    } => {
                        crate::metrics::link_events("backed_off");
                        // The back-off refuses its Hellos only: a link it has stays (one
                        // the core ends has a line of its own, "dropping ...").
                        let secs = back_off.as_micros() as f64 / 1e6;
                        let text = format!(
                            "{peer} {why}: penalized; a new Hello from it within {secs:.1} s \
                             is refused"
                        );
                        warn!("{text}");
                        if let Some(s) = &mut self.status {
                            let mut e = status::Event::new(unix_ms(), "backed_off", "warn", text);
                            e.node = Some(peer.to_string());
                            s.board.event(e);
                        }
                    }
                    RelayEvent::Refused { peer, reason } => {
                        debug!("refused {peer}'s hello: {reason}")
                    }
                    RelayEvent::Excluded { peer, reason } => {
                        let why = match reason {
                            Exclusion::Convicted {
                                interval,
                                exchange,
                                kind,
                            } => format!(
                                "convicted of {kind:?} in the blame round of exchange \
                                 {exchange} of interval {interval}"
                            ),
                            _ => "listed".to_string(),
                        };
                        warn!("{peer} is refused until an operator admits it: {why}");
                        if let Some(s) = &mut self.status {
                            let mut e = status::Event::new(
                                unix_ms(),
                                "excluded",
                                "warn",
                                format!("{peer} is refused until an operator admits it: {why}"),
                            );
                            e.node = Some(peer.to_string());
                            s.board.event(e);
                        }
                        if let (PeerId::Client(i), Some(r)) = (peer, &self.refusals) {
                            r.record(i, why);
                        }
                    }
                    RelayEvent::Probed { peer, outcome } => match outcome {
                        ProbeOutcome::Answered => info!(
                            "refused a second process as {peer}: the connected one answered \
                             a probe"
                        ),
                        ProbeOutcome::Silent => warn!(
                            "{peer}'s connected process did not answer a probe; a new \
                             process replaces it"
                        ),
                    },
                    _ => {}
                }
            }
            // The core decodes exchanges as its events are polled: time them now.
            if let Some(s) = &mut self.status {
                let decoded = self.relay.exchanges_decoded();
                if let Some(rtt) = s.probe.decoded(decoded, std::time::Instant::now()) {
                    s.board.round_trip(rtt);
                }
            }
            let mut sent = false;
            let mut slow: Vec<PeerId> = Vec::new();
            // Links whose writer ended (the socket failed): closed, not slow.
            let mut broken: Vec<u64> = Vec::new();
            loop {
                let t = match self
                    .relay
                    .poll_transmit(now, &mut self.out, &mut self.exits)
                {
                    Ok(Some(t)) => t,
                    Ok(None) => {
                        // Replays go out only as fast as a member's queue takes them: tell
                        // the core how much room the waiting member's queue has.
                        let room = self
                            .relay
                            .replay_waiting()
                            .and_then(|LinkId(token)| Some((token, self.links.get(&token)?)))
                            .map(|(token, link)| (token, link.tx.capacity()));
                        match room {
                            Some((token, room)) if room > 0 => {
                                self.relay.handle_link_room(LinkId(token), room);
                                if self.relay.replay_waiting() == Some(LinkId(token)) {
                                    // What room there is, the interval's own frames need.
                                    break;
                                }
                                continue;
                            }
                            _ => break,
                        }
                    }
                    Err(e) => {
                        warn!("cannot encode a frame: {e}");
                        break;
                    }
                };
                sent = true;
                if t.destination == Destination::Members {
                    // A new exchange's request to the clients: the probe's start.
                    if let Some(s) = &mut self.status {
                        s.probe.issued(std::time::Instant::now());
                    }
                }
                let frame = Bytes::copy_from_slice(&self.out[..t.len]);
                let mut closing = Vec::new();
                for LinkId(token) in self.relay.links(t.destination) {
                    let Some(link) = self.links.get(&token) else {
                        continue;
                    };
                    match link.tx.try_send(frame.clone()) {
                        Ok(()) => {
                            if let Some(times) = &mut self.times {
                                times.queued(token, &frame, std::time::Instant::now());
                            }
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            if let Some(peer) = link.peer {
                                slow.push(peer);
                            }
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => broken.push(token),
                    }
                    if t.close_after {
                        closing.push(token);
                    }
                }
                for token in closing {
                    // Dropping the sender lets the writer flush the goodbye, then close.
                    if let Some(link) = self.links.remove(&token) {
                        link.reader.abort();
                        self.admission.handle_closed(token);
                    }
                }
            }
            for token in broken {
                if let Some(link) = self.links.get(&token) {
                    link.reader.abort();
                }
                self.link_event(LinkEvent::Closed(token, "the connection failed".into()));
            }
            for peer in slow {
                if self.relay.link_of(peer).is_some() {
                    warn!("dropping {peer}: not reading its link");
                    self.relay.drop_peer(now, peer, GoodbyeReason::TooSlow);
                }
            }
            if !sent {
                break;
            }
        }
    }

    /// A blame round ended: its verdict is logged and its evidence written to
    /// `blame-<interval>-<exchange>.bin` in the refusal list's folder.
    fn blame_ended(
        &mut self,
        interval: u32,
        exchange: u64,
        verdict: Option<(dissent_core::blame::Culprit, dissent_core::blame::BlameKind)>,
    ) {
        match verdict {
            Some((who, kind)) => {
                warn!("blame round about exchange {exchange} of interval {interval}: {who} {kind}")
            }
            None => info!(
                "blame round about exchange {exchange} of interval {interval} ended with no \
                 verdict"
            ),
        }
        let Some((i, e, bytes)) = self.relay.evidence() else {
            return;
        };
        if (i, e) != (interval, exchange) {
            return;
        }
        let Some(dir) = &self.evidence_dir else {
            warn!("no state folder: the evidence of exchange {exchange} is not kept");
            return;
        };
        let path = dir.join(format!("blame-{interval}-{exchange}.bin"));
        match std::fs::write(&path, bytes) {
            Ok(()) => info!(
                "blame evidence written to {} (check it: dissent blame verify {} --group DIR)",
                path.display(),
                path.display()
            ),
            Err(err) => warn!("cannot write {}: {err}", path.display()),
        }
    }
}
