//! The net's pump: flushing each role's transmits onto the wire, delivering the frame at
//! the head of the queue (or the next timeout), and the tampering hooks on the way.

use super::*;

impl Net {
    pub(super) fn flush_node(&mut self, node: Node) {
        let Some(&link) = self.node_link.get(&node) else {
            return;
        };
        let mut out = core::mem::take(&mut self.out);
        loop {
            let n = match node {
                Node::Client(i) => self.clients[i].poll_transmit(&mut out),
                Node::Trustee(j) => self.trustees[j].poll_transmit(&mut out),
            };
            match n {
                Ok(Some(n)) => {
                    let reveal = wire::split_frame(&out[..n])
                        .ok()
                        .flatten()
                        .is_some_and(|(body, _)| body.first() == Some(&BLAME_REVEAL_VARIANT));
                    if reveal && self.reveal_late > Duration::default() {
                        self.send_late(link, Rc::from(&out[..n]), self.reveal_late);
                    } else {
                        self.send(true, link, Rc::from(&out[..n]));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.node_errors.push((node, std::format!("{e}")));
                    break;
                }
            }
        }
        self.out = out;
    }

    /// Delivers every event and frame the relay has, like a shell.
    pub fn flush_relay(&mut self) {
        // As the hosted relay drives its core: events, then frames, again while frames went
        // out (sending one can make the next events ready).
        while self.flush_relay_once() {}
    }

    /// One pass of [`Net::flush_relay`]: whether a frame went out.
    fn flush_relay_once(&mut self) -> bool {
        let now = self.now;
        while let Some(ev) = self.relay.poll_event(now) {
            match ev {
                RelayEvent::Upstream { conn, open, data } => {
                    if open {
                        *self.exit.opened.entry(conn).or_default() += 1;
                        self.exit.credit.insert(conn, ExitCredit::new());
                        self.exit.opened_up(conn);
                        self.exit.upstream.entry(conn).or_default();
                    }
                    if let Some(up) = self.exit.upstream.get_mut(&conn) {
                        up.extend_from_slice(data);
                        self.exit.arrived(conn, data.len());
                        if self.exit.echo && !data.is_empty() {
                            self.exit.replies.push_back((conn, Some(data.to_vec())));
                        }
                    }
                }
                RelayEvent::Close { conn } => {
                    self.exit.closed.push(conn);
                    if self.exit.echo {
                        self.exit.replies.push_back((conn, None));
                    }
                }
                RelayEvent::Grant { conn, bytes } => self.exit.grant(conn, bytes),
                RelayEvent::Abort { conn } => {
                    self.exit.aborted.push(conn);
                    self.exit.replies.retain(|(c, _)| *c != conn);
                }
                RelayEvent::Garbled { interval, exchange } => {
                    self.exit.garbled += 1;
                    self.exit.garbled_at.push((interval, exchange));
                }
                RelayEvent::Accused {
                    interval,
                    exchange,
                    bit,
                } => self.exit.accused.push((interval, exchange, bit)),
                RelayEvent::TrapSprung {
                    interval,
                    exchange,
                    slot,
                    bit,
                    sprung,
                } => self
                    .exit
                    .sprung
                    .push((interval, exchange, slot, bit, sprung)),
                RelayEvent::IntervalStarted { interval, .. } => self.intervals.push(interval),
                RelayEvent::Dropped { peer, .. } => self.dropped.push(peer),
                RelayEvent::Penalized {
                    peer,
                    why,
                    back_off,
                } => self.penalties.push((now, peer, why, back_off)),
                RelayEvent::Refused { peer, reason } => self.refused.push((now, peer, reason)),
                RelayEvent::Joined { peer } => self.joins.push((now, peer)),
                RelayEvent::Excluded { peer, reason } => self.excluded.push((now, peer, reason)),
                RelayEvent::BlameStarted { interval, exchange } => {
                    self.blame_started.push((now, interval, exchange))
                }
                RelayEvent::BlameDropped {
                    interval,
                    exchange,
                    reason,
                } => self.blame_dropped.push((interval, exchange, reason)),
                RelayEvent::BlameIncomplete {
                    interval,
                    exchange,
                    absent,
                    ..
                } => self
                    .blame_incomplete
                    .push((now, interval, exchange, absent)),
                RelayEvent::TrusteeWithoutBlame { trustee } => self.without_blame.push(trustee),
                RelayEvent::BlameRestarted {
                    interval,
                    exchange,
                    client,
                } => self.blame_restarted.push((now, interval, exchange, client)),
                RelayEvent::BlameGaveUp {
                    interval,
                    exchange,
                    members,
                } => self.blame_gave_up.push((now, interval, exchange, members)),
                RelayEvent::BlameAwaiting {
                    interval,
                    exchange,
                    members,
                } => self.blame_awaiting.push((now, interval, exchange, members)),
                RelayEvent::BlameEnded {
                    interval,
                    exchange,
                    verdict,
                } => {
                    self.blame_ended.push((now, interval, exchange, verdict));
                    if let Some((i, e, bytes)) = self.relay.evidence() {
                        if (i, e) == (interval, exchange) {
                            self.evidence.push(bytes.to_vec());
                        }
                    }
                }
                _ => {}
            }
        }
        let mut out = core::mem::take(&mut self.relay_out);
        let mut slow: Vec<LinkId> = Vec::new();
        let mut sent = false;
        loop {
            let t = match self.relay.poll_transmit(now, &mut out, &mut self.exit) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    // Replays wait for room: the shell says how much each link's queue has.
                    if self.give_room() {
                        continue;
                    }
                    break;
                }
                Err(e) => panic!("relay cannot encode a frame: {e}"),
            };
            sent = true;
            let frame: Rc<[u8]> = Rc::from(&out[..t.len]);
            if let Ok(Some((body, _))) = wire::split_frame(&frame) {
                if body.first() == Some(&10) {
                    self.replays += 1;
                }
            }
            let mut links = core::mem::take(&mut self.fanout);
            links.extend(self.relay.links(t.destination));
            for &link in &links {
                if self.links.contains_key(&link) {
                    let full = self
                        .cfg
                        .queue_limit
                        .is_some_and(|limit| self.queued.get(&link).copied().unwrap_or(0) >= limit);
                    if full && !t.close_after {
                        // A hosted relay's full send queue: the node is dropped as too slow.
                        if !slow.contains(&link) {
                            slow.push(link);
                        }
                        continue;
                    }
                    // A goodbye reaches the node, then its link closes.
                    self.send_then(false, link, frame.clone(), t.close_after);
                }
            }
            links.clear();
            self.fanout = links;
        }
        self.relay_out = out;
        let dropped = !slow.is_empty();
        for link in slow {
            if let Some(node) = self.node_of(link) {
                self.too_slow.push(node);
                self.relay
                    .drop_peer(now, node.peer(), GoodbyeReason::TooSlow);
            }
        }
        // Their goodbyes, and whatever the drops changed, go out in the next pass.
        sent || dropped
    }

    /// Reports room on the link a replay waits for; false if there is none to report.
    fn give_room(&mut self) -> bool {
        let Some(link) = self.relay.replay_waiting() else {
            return false;
        };
        let queued = self.queued.get(&link).copied().unwrap_or(0);
        let room = match self.cfg.queue_limit {
            Some(limit) => limit.saturating_sub(queued),
            None => 1 << 20,
        };
        if room == 0 || !self.links.contains_key(&link) {
            return false;
        }
        self.relay.handle_link_room(link, room);
        // Still waiting: the room is what the interval's own frames need.
        self.relay.replay_waiting() != Some(link)
    }

    /// Delivers the next due frame, or advances the clock to the relay's next timeout;
    /// false when nothing can happen any more.
    pub fn step(&mut self) -> bool {
        // Frames of links that closed while they travelled are gone.
        while self
            .wires
            .front()
            .is_some_and(|w| !self.links.contains_key(&w.link))
        {
            let _ = self.wires.pop();
        }
        if let Some(at) = self.wires.front().map(|w| w.at) {
            if let Some(t) = self.relay.poll_timeout().filter(|t| *t < at) {
                // A timeout falls before this frame: handle it first.
                self.now = self.now.max(t);
                self.timeout();
                return true;
            }
            // Harness set-up only (never bytes from a network): a failure is a test's mistake.
            let w = self.wires.pop().expect("the queue has a head");
            if w.at > self.now {
                self.now = w.at;
            }
            self.timeout();
            let Ok(Some((body, _))) = wire::split_frame(&w.frame) else {
                panic!("harness sent a broken frame");
            };
            if w.to_relay {
                self.deliver_to_relay(w.link, body);
            } else {
                if let Some(q) = self.queued.get_mut(&w.link) {
                    *q = q.saturating_sub(1);
                }
                self.deliver_to_node(w.link, body, w.close_after);
                if self.relay.replay_waiting() == Some(w.link) {
                    // Its queue drained a little: the replay goes on.
                    self.flush_relay();
                }
            }
            return true;
        }
        match self.relay.poll_timeout() {
            Some(t) => {
                self.now = self.now.max(t);
                self.timeout();
                true
            }
            None => false,
        }
    }

    fn timeout(&mut self) {
        if let Some(t) = self.relay.poll_timeout() {
            if t <= self.now {
                self.relay.handle_timeout(self.now);
                self.flush_relay();
            }
        }
    }

    fn deliver_to_relay(&mut self, link: LinkId, body: &[u8]) {
        let Some(state) = self.links.get_mut(&link) else {
            return;
        };
        let node = state.node;
        let peer = node.peer();
        let mut garbled;
        let mut body = body;
        if state.hello_done && body.first() == Some(&BLAME_REVEAL_VARIANT) {
            self.reveals.push(peer);
            if self.refuse_blame.contains(&node) {
                return;
            }
            if self.garble_reveal.contains(&node) {
                garbled = body.to_vec();
                if let Some(b) = garbled.last_mut() {
                    *b ^= 1;
                }
                body = &garbled;
            }
        }
        if body.first() == Some(&BLAME_DH_PROOF_VARIANT) {
            self.dh_proofs.push((node, body.to_vec()));
            if self.drop_dh_proofs || self.refuse_blame.contains(&node) {
                return;
            }
        }
        let state = self.links.get_mut(&link).expect("the link is known");
        if !state.hello_done {
            state.hello_done = true;
            if let Err(e) = self.relay.handle_hello(self.now, link, peer, body) {
                self.relay_errors.push((peer, std::format!("{e}")));
            }
        } else if let Err(e) = self.relay.handle_frame(self.now, link, peer, body) {
            self.relay_errors.push((peer, std::format!("{e}")));
        }
        let more = self.relay_batch
            && self
                .wires
                .front()
                .is_some_and(|w| w.to_relay && w.at <= self.now);
        if !more {
            self.flush_relay();
        }
    }

    fn deliver_to_node(&mut self, link: LinkId, body: &[u8], close_after: bool) {
        let Some(state) = self.links.get(&link) else {
            return;
        };
        let node = state.node;
        if let Some(reason) = wire::goodbye_reason(body) {
            self.goodbyes.push((self.now, node, reason));
        }
        if let Node::Client(i) = node {
            if self.muted[i] {
                // It reads nothing, but a link the relay closes is closed.
                if close_after {
                    self.disconnect(node);
                }
                return;
            }
        }
        if body.first() == Some(&BLAME_DH_REQUEST_VARIANT) {
            self.dh_requests.push((node, body.to_vec()));
        }
        let failed = match node {
            Node::Client(i) => self.deliver_to_client(i, link, body),
            Node::Trustee(j) => self.trustees[j]
                .handle_frame(self.now, body)
                .map_err(|e| std::format!("{e}"))
                .err(),
        };
        if let Some(e) = failed {
            self.node_errors.push((node, e));
            self.disconnect(node);
            return;
        }
        self.flush_node(node);
        if close_after {
            self.disconnect(node);
        }
    }

    fn deliver_to_client(&mut self, i: usize, link: LinkId, body: &[u8]) -> Option<String> {
        self.note_published(i, body);
        let mut out = core::mem::take(&mut self.out);
        let handled = self.clients[i].handle_frame(self.now, body, &mut out);
        let res = match handled {
            Ok(h) => {
                // The cell goes out first, then the delivery.
                if let Some(n) = h.cell {
                    if self.log_cells {
                        let (b, _) = wire::split_frame(&out[..n])
                            .ok()
                            .flatten()
                            .unwrap_or((&[], 0));
                        if let Ok(wire::Message::Cell {
                            interval,
                            exchange,
                            cell,
                        }) = wire::Message::parse(b)
                        {
                            self.cell_log[i].push((interval, exchange, cell.len()));
                        }
                    }
                    let mut frame = out[..n].to_vec();
                    if self.disrupt == Some(i) && self.flip_record_byte(&mut frame) {
                        self.disrupt = None;
                    }
                    self.tamper_cell(i, body, &mut frame);
                    let mut late = self.late.get(i).copied().unwrap_or_default();
                    if self.clients[i].disrupts_slowly() {
                        late = Duration::from_micros(
                            late.as_micros() + self.cfg.slow_delay.as_micros(),
                        );
                    }
                    self.send_late(link, Rc::from(frame), late);
                }
                if let Some(d) = h.delivery {
                    deliver(&mut self.apps[i], d);
                }
                None
            }
            Err(e) => Some(std::format!("{e}")),
        };
        self.out = out;
        while let Some(d) = self.clients[i].poll_replay() {
            deliver(&mut self.apps[i], d);
        }
        self.client_events(i);
        if res.is_none() {
            self.clients[i].prepare(self.now, &mut self.apps[i]);
        }
        // The application takes what it was handed after the shell's turn, as a hosted
        // client's writers do, and reports it.
        if self.apps[i].take_arrived() {
            self.offer(i);
        }
        res
    }

    /// Flips the first byte of the first record's header in a data-exchange cell frame;
    /// false for any other frame.
    fn flip_record_byte(&self, frame: &mut [u8]) -> bool {
        let reservation = self.cfg.clients.div_ceil(8);
        let at = match wire::split_frame(frame) {
            Ok(Some((body, _))) => match wire::Message::parse(body) {
                Ok(wire::Message::Cell { cell, .. })
                    if cell.len() > reservation.max(wire::NEXT_LEN) =>
                {
                    cell.as_ptr() as usize - frame.as_ptr() as usize + wire::NEXT_LEN
                }
                _ => return false,
            },
            _ => return false,
        };
        frame[at] ^= 0x80;
        true
    }

    pub(super) fn client_events(&mut self, i: usize) {
        while let Some(e) = self.clients[i].poll_event() {
            match e {
                ClientEvent::Lost { conn } => self.apps[i].lost.push(conn),
                ClientEvent::Disrupted { interval, exchange } => {
                    self.apps[i].disrupted.push((interval, exchange))
                }
                ClientEvent::Blamed {
                    interval,
                    exchange,
                    who,
                    kind,
                } => self.apps[i].blamed.push((interval, exchange, who, kind)),
                _ => {}
            }
        }
    }

    /// Keeps the `Disrupted` frames a tampering client receives, and XORs its mask into
    /// the cell it answers a request with.
    fn tamper_cell(&mut self, i: usize, request: &[u8], frame: &mut [u8]) {
        let slot = self.slots[i];
        let Some(t) = self.tamper.as_mut().filter(|t| t.client == i) else {
            return;
        };
        let Ok(wire::Message::ClientRequest(req)) = wire::Message::parse(request) else {
            return;
        };
        let Ok(Some((body, _))) = wire::split_frame(frame) else {
            return;
        };
        let Ok(wire::Message::Cell { cell, .. }) = wire::Message::parse(body) else {
            return;
        };
        let at = cell.as_ptr() as usize - frame.as_ptr() as usize;
        let len = cell.len();
        let view = TamperView {
            interval: req.interval,
            exchange: req.exchange,
            kind: req.kind,
            own_slot: slot,
            cell,
            published: &t.published,
        };
        let Some(mask) = (t.mask)(&view) else {
            return;
        };
        if mask.iter().all(|&b| b == 0) {
            return;
        }
        t.tampered += 1;
        for (b, m) in frame[at..at + len].iter_mut().zip(mask) {
            *b ^= m;
        }
    }

    fn note_published(&mut self, i: usize, body: &[u8]) {
        if let Some(t) = self.tamper.as_mut().filter(|t| t.client == i) {
            if let Ok(wire::Message::Disrupted { cell, .. }) = wire::Message::parse(body) {
                t.published.push(cell.to_vec());
            }
        }
    }
}
