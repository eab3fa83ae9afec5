//! The relay's part of the setup: gathering the members on setup links, running
//! `SetupRelay` over them (forwarding every trustee frame to every node, broadcasting its
//! own), handing departures to the core, and what it serves the clients an epoch leaves
//! out.
//!
//! Owns the relay's setup links and their timing; the decisions are the core's.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    Trustee(usize),
    Client(usize),
}

/// A link's events, each with the link's serial number (a member that links again has a
/// new link, and the old one's end must not take the new one's place).
enum Ev {
    Joined(Who, u64, mpsc::Sender<Bytes>),
    Frame(Who, Bytes),
    Left(Who, u64),
}

/// The relay's links to the members, by member: the link's serial and its sender.
type Links = HashMap<Who, (u64, mpsc::Sender<Bytes>)>;

/// What a link to the relay's setup listener is.
enum Admitted {
    /// A member of the version being set up, on a setup link.
    Setup(Who),
    /// A node of the epoch that ended, served the switch.
    Leaving(Leaver),
    /// A trustee of the version on a rejoin link: the epoch is not established yet.
    Rejoin(Who),
}

/// The relay's part: listens on `listen`, gathers the group's members, runs the setup with
/// every trustee and the clients present, and returns the epoch's group, the address it
/// listened on, and what the epoch's DC-net serves besides its members ([`Leaving`]: the
/// nodes of the epoch that ended at a switch, `from`, and the clients this epoch leaves out).
///
/// Gathering ends when every member is linked, or once every trustee and at least
/// `min_clients` clients are linked and nobody new has linked for [`GATHER_QUIET`]. Absent
/// clients get no slot this epoch; one that links later is sent the attempt's `Open` (it
/// sees that it is no participant) and waits for the next epoch. A participant that leaves,
/// or does not submit within [`SUBMIT_WAIT`], makes the core open a new attempt without it
/// (bounded; the core stops the setup below `min_clients` or after its most attempts).
pub async fn relay(
    desc: &GroupDesc,
    keys: &PrivateKeys,
    key_file: &Path,
    listen: SocketAddr,
    policy: RelayPolicy,
    from: Option<std::sync::Arc<Leaving>>,
) -> Result<(Group, SocketAddr, Option<std::sync::Arc<Leaving>>)> {
    let RelayPolicy {
        min_clients,
        trustee_wait: wait_base,
    } = policy;
    let setup = Setup::new(desc)?;
    if let Some(saved) = EpochFile::load(key_file, desc)? {
        let serving = Leaving::serving(from, saved.absent(desc, &setup)?, saved.rejoining(desc)?);
        return Ok((saved.group(desc)?, listen, serving));
    }
    let config = setup.config();
    let (group_id, setup_id) = setup.link_ids();
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr()?;
    let min_clients = usize::from(min_clients.max(1)).min(desc.clients.len());
    info!(
        "setup of epoch {} of group {}: listening on {local}; waiting for {} trustees and {} \
         clients (at least {min_clients} clients; absent ones get no slot this epoch)",
        setup.epoch,
        desc.fingerprint(),
        desc.trustees.len(),
        desc.clients.len()
    );
    let mut members: HashMap<[u8; 32], Who> = HashMap::new();
    for (j, t) in desc.trustees.iter().enumerate() {
        members.insert(t.link, Who::Trustee(j));
    }
    for (i, c) in desc.clients.iter().enumerate() {
        members.insert(c.link, Who::Client(i));
    }
    let name = |w: Who| match w {
        Who::Trustee(j) => format!("trustee {}", desc.trustees[j].name),
        Who::Client(i) => format!("client {}", desc.clients[i].name),
    };
    let (ev_tx, mut ev_rx) = mpsc::channel::<Ev>(QUEUE);
    let queue = queue_len(&config);
    let relay_key = keys.link;
    // The setup link, then a trustee's rejoin link (served only once the epoch is
    // established: until then it is closed at once), then the ended epoch's.
    let rejoin_id = (
        group_id,
        session::rejoin_session(&desc.digest(), setup.epoch),
    );
    let mut ids = vec![(group_id, setup_id), rejoin_id];
    if let Some(f) = &from {
        ids.extend_from_slice(f.ids());
    }
    let serving = from.clone();
    // Setup links get the DC-net's replay check: a replayed handshake request is refused
    // before it could stand in for the member's link.
    let limits = crate::relay::admission::Limits::default();
    let replays = std::sync::Arc::new(crate::relay::admission::Replays::new(
        limits.replay_window,
        limits.replay_capacity,
    ));
    let trustee_names: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new(desc.trustees.iter().map(|t| t.name.clone()).collect());
    let epoch = setup.epoch;
    let acceptor = tokio::spawn(async move {
        for serial in 0u64.. {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: try again shortly rather than spin.
                    warn!("setup: cannot accept a link: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let members = members.clone();
            let ids = ids.clone();
            let from = from.clone();
            let ev_tx = ev_tx.clone();
            let replays = replays.clone();
            let trustee_names = trustee_names.clone();
            tokio::spawn(async move {
                let (r, w) = stream.into_split();
                let admitted = accept_setup(r, w, &relay_key, &ids, &replays, |n, k| match n {
                    0 => members.get(k).copied().map(Admitted::Setup),
                    1 => members
                        .get(k)
                        .copied()
                        .filter(|w| matches!(w, Who::Trustee(_)))
                        .map(Admitted::Rejoin),
                    _ => from.as_ref()?.admit(n - 2, k).map(Admitted::Leaving),
                })
                .await;
                let (who, mut reader, writer) = match admitted {
                    Ok((Admitted::Setup(who), r, w)) => (who, r, w),
                    Ok((Admitted::Rejoin(who), _r, _w)) => {
                        let j = match who {
                            Who::Trustee(j) | Who::Client(j) => j,
                        };
                        info!(
                            "setup: trustee {} asked for epoch {epoch} on a rejoin link while it is \
                             being set up: link closed, the trustee takes part in the setup",
                            trustee_names.get(j).map_or("?", String::as_str),
                        );
                        return;
                    }
                    Ok((Admitted::Leaving(who), _r, w)) => {
                        if let Some(f) = &from {
                            f.serve(who, w).await;
                        }
                        return;
                    }
                    Err(e) => {
                        warn!("setup: a link was refused: {e:#}");
                        return;
                    }
                };
                let (tx, rx) = mpsc::channel(queue);
                if ev_tx.send(Ev::Joined(who, serial, tx)).await.is_err() {
                    return;
                }
                tokio::spawn(writer.run(rx));
                while let Ok(Some(body)) = reader.next().await {
                    if ev_tx.send(Ev::Frame(who, body)).await.is_err() {
                        return;
                    }
                }
                let _ = ev_tx.send(Ev::Left(who, serial)).await;
            });
        }
    });

    let mut links: Links = HashMap::new();
    // After a restart: the attempts it opened and those that convicted, as it kept them;
    // the latter are shown to every member that links.
    let mut kept = SetupFile::load(key_file, desc)?;
    let all = desc.trustees.len() + desc.clients.len();
    let missing = |links: &Links| -> Vec<String> {
        (0..desc.trustees.len())
            .map(Who::Trustee)
            .chain((0..desc.clients.len()).map(Who::Client))
            .filter(|w| !links.contains_key(w))
            .map(name)
            .collect()
    };
    // Gathering: every member, or every trustee and enough clients and a quiet moment (or,
    // as the group allows, enough trustees and a longer one).
    let mut last_join = tokio::time::Instant::now();
    let mut absent_trustees: Vec<usize> = Vec::new();
    // The bound on a trustee's turn (and on one absent at gathering); silence is acted on
    // only as the group's policy allows.
    let wait = trustee_wait(wait_base, desc.clients.len());
    let silence = setup.min_trustees >= 2;
    while links.len() < all {
        let trustees = links
            .keys()
            .filter(|w| matches!(w, Who::Trustee(_)))
            .count();
        let clients = links.len() - trustees;
        let enough = trustees == desc.trustees.len() && clients >= min_clients;
        // Without some trustees, on the relay's word: only as the group's policy allows.
        let enough_without =
            setup.min_trustees >= 2 && trustees >= setup.min_trustees && clients >= min_clients;
        let deadline = if enough {
            last_join + GATHER_QUIET
        } else if enough_without {
            last_join + wait
        } else {
            last_join + STALL
        };
        let ev = match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => bail!("setup: the listener stopped"),
            Err(_) if enough_without && !enough => {
                absent_trustees = (0..desc.trustees.len())
                    .filter(|&j| !links.contains_key(&Who::Trustee(j)))
                    .collect();
                warn!(
                    "setup: nobody new linked for {} s; going on without {}: the trustees \
                     among them are left out as absent, on the relay's word (nothing proves \
                     it; the group's min_trustees {} allows it)",
                    wait.as_secs(),
                    missing(&links).join(", "),
                    setup.min_trustees
                );
                break;
            }
            Err(_) if enough => {
                info!(
                    "setup: nobody new linked for {} s; going on without {}: they get no slot \
                     this epoch",
                    GATHER_QUIET.as_secs(),
                    missing(&links).join(", ")
                );
                break;
            }
            Err(_) => bail!(
                "setup: nobody new linked within {} s; missing: {} (every trustee and {} \
                 clients are needed)",
                STALL.as_secs(),
                missing(&links).join(", "),
                min_clients
            ),
        };
        match ev {
            Ev::Joined(w, serial, tx) => {
                // A member linking again replaces its link (its process restarted).
                show_records(&tx, &kept.records);
                links.insert(w, (serial, tx));
                last_join = tokio::time::Instant::now();
                info!("setup: {} linked ({}/{all} members)", name(w), links.len());
            }
            Ev::Left(w, serial) => {
                if links.get(&w).is_some_and(|(s, _)| *s == serial) {
                    links.remove(&w);
                    info!("setup: {} left before the setup started", name(w));
                }
            }
            Ev::Frame(w, _) => warn!("setup: {} sent a frame before the setup started", name(w)),
        }
    }
    let mut participants = vec![0u8; dissent_core::bits::bitmap_len(desc.clients.len())];
    for w in links.keys() {
        if let Who::Client(i) = *w {
            participants[i / 8] |= 1 << (i % 8);
        }
    }
    let mut relay = SetupRelay::new(
        config,
        SetupStorage::with_vecs(&config),
        vec![0u8; SetupRelay::<Vec<u8>>::collected_len(&config)],
        &participants,
    )
    .map_err(|e| anyhow!("setup: the group does not fit a setup: {e:?}"))?;
    relay.limit(min_clients, MAX_ATTEMPTS);
    // After a restart: the attempts it opened and the attempts that convicted, as kept.
    for (k, record) in kept.records.iter().enumerate() {
        for frame in record {
            if let Err(f) = relay.witness(frame.get(4..).unwrap_or(&[])) {
                bail!(
                    "setup: the recorded attempt {k} that convicted ({}) does not check: {}",
                    SetupFile::path(key_file).display(),
                    describe(desc, f)
                );
            }
        }
    }
    relay.resume(kept.next_attempt, kept.silent);
    for &j in &absent_trustees {
        if let Departure::Stop(f) = relay.silent(j as u8) {
            bail!("setup of epoch {} failed: {f}", setup.epoch);
        }
    }
    if !absent_trustees.is_empty() {
        kept.silent = relay.silenced();
        kept.save(key_file)?;
    }
    info!(
        "setup: {} of {} clients and every trustee linked; opening epoch {}",
        links.keys().filter(|w| matches!(w, Who::Client(_))).count(),
        desc.clients.len(),
        setup.epoch
    );
    let broadcast = |links: &Links, frame: &[u8]| {
        let f = framed(frame);
        for (who, (_, tx)) in links {
            // A closed link's departure is on its way; a full one's node misses this frame.
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(f.clone()) {
                warn!(
                    "setup: the link of {} holds {queue} frames unsent: a frame was not queued \
                     for it",
                    name(*who)
                );
            }
        }
    };
    let mut buf = vec![0u8; dissent_core::epoch::message::CHUNK_HEADER_LEN + MAX_CHUNK_DATA];
    // The last `Open`: what a client that links during the setup is sent.
    let mut open = Bytes::new();
    let mut quiet_since = tokio::time::Instant::now();
    // When the relay began waiting for the submissions of the attempt under way.
    let mut submitting: Option<tokio::time::Instant> = None;
    // Trustees whose link dropped during the setup: the attempt waits for them to link again.
    let mut trustees_away: Vec<usize> = Vec::new();
    // Clients that linked again during the setup, sent the next `Open` (which leaves them
    // out) and closed.
    let mut late: Vec<mpsc::Sender<Bytes>> = Vec::new();
    // The frames of the attempt under way, as broadcast: kept as its record if it convicts.
    let mut attempt_frames: Vec<Bytes> = Vec::new();
    // The trustee step awaited and since when (reset by each of its frames).
    let mut turn: Option<(Waiting, tokio::time::Instant)> = None;
    loop {
        while let Some(n) = relay
            .poll_broadcast(&mut buf)
            .map_err(|e| anyhow!("setup: cannot encode a frame: {e:?}"))?
        {
            if let Ok(SetupMessage::Open(o)) = SetupMessage::parse(&buf[..n]) {
                // Kept before any node sees it: a restarted relay never opens it again.
                kept.next_attempt = o.attempt.saturating_add(1);
                kept.save(key_file)?;
                attempt_frames.clear();
                info!(
                    "setup: attempt {} opened over {} clients and {} trustees",
                    o.attempt,
                    relay.counts().1,
                    o.trustees.count_ones()
                );
                open = framed(&buf[..n]);
                for tx in late.drain(..) {
                    let _ = tx.try_send(open.clone());
                }
            }
            attempt_frames.push(framed(&buf[..n]));
            broadcast(&links, &buf[..n]);
        }
        if let Some(f) = relay.failure() {
            flush(links).await;
            bail!(
                "setup of epoch {} failed: {}",
                setup.epoch,
                describe(desc, f)
            );
        }
        if relay.established().is_some() {
            break;
        }
        submitting = match (relay.waiting(), submitting) {
            (Waiting::Submit(_), Some(at)) => Some(at),
            (Waiting::Submit(_), None) => Some(tokio::time::Instant::now()),
            _ => None,
        };
        let waiting = relay.waiting();
        let awaited_trustee = match waiting {
            Waiting::Key(j) | Waiting::Chunk(j, _) | Waiting::Seal(j, _) | Waiting::Record(j) => {
                Some(j)
            }
            _ => None,
        };
        turn = match (awaited_trustee, turn) {
            (None, _) => None,
            (Some(_), Some((w, at))) if w == waiting => Some((w, at)),
            (Some(_), _) => Some((waiting, tokio::time::Instant::now())),
        };
        let stall = quiet_since + STALL;
        let submit_at = submitting.map(|at| at + SUBMIT_WAIT);
        let turn_at = turn.filter(|_| silence).map(|(_, at)| at + wait);
        let deadline = [Some(stall), submit_at, turn_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(stall);
        let ev = match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
            Ok(Some(ev)) => ev,
            Ok(None) => bail!("setup: the listener stopped"),
            Err(_) if turn_at == Some(deadline) && deadline < stall => {
                let Some(j) = awaited_trustee else { continue };
                let t = &desc.trustees[usize::from(j)];
                warn!(
                    "setup: trustee {} ({}) did not send {} within {} s: SILENT, on the \
                     relay's word (nothing proves it)",
                    t.name,
                    t.fingerprint(),
                    awaited_step(desc, waiting),
                    wait.as_secs()
                );
                let departure = relay.silent(j);
                if let Departure::Restart { .. } = departure {
                    kept.silent = relay.silenced();
                    kept.save(key_file)?;
                }
                departed(departure, &format!("trustee {} is left out", t.name));
                turn = None;
                continue;
            }
            Err(_) if deadline < stall => {
                let (submitted, awaited) = relay.counts();
                warn!(
                    "setup: {} of {awaited} submissions came within {} s; going on without \
                     the others",
                    submitted,
                    SUBMIT_WAIT.as_secs()
                );
                departed(relay.drop_missing(), "did not submit");
                submitting = None;
                continue;
            }
            Err(_) => {
                flush(links).await;
                bail!(
                    "setup: nothing came for {} s while waiting for {}",
                    STALL.as_secs(),
                    awaited(desc, relay.waiting())
                )
            }
        };
        quiet_since = tokio::time::Instant::now();
        match ev {
            Ev::Joined(Who::Trustee(j), _, tx) if relay.trustees() & (1 << j) == 0 => {
                // A convicted trustee: shown the records and the attempt that leaves it out
                // (it stops), never waited for.
                show_records(&tx, &kept.records);
                let _ = tx.try_send(open.clone());
                info!(
                    "setup: convicted trustee {} linked again; it is shown the attempt                      without it",
                    desc.trustees[j].name
                );
            }
            Ev::Joined(Who::Trustee(j), serial, tx) => {
                show_records(&tx, &kept.records);
                links.insert(Who::Trustee(j), (serial, tx));
                if let Some(at) = trustees_away.iter().position(|&t| t == j) {
                    trustees_away.swap_remove(at);
                }
                if trustees_away.is_empty() {
                    info!(
                        "setup: trustee {} linked again; a new attempt starts",
                        desc.trustees[j].name
                    );
                    departed(relay.reopen(), "");
                } else {
                    info!(
                        "setup: trustee {} linked again; waiting for the other trustees away",
                        desc.trustees[j].name
                    );
                }
            }
            Ev::Joined(Who::Client(i), _, tx) => {
                show_records(&tx, &kept.records);
                // It missed the attempt's frames: it is sent the `Open` that leaves it out
                // (it sees that it is no participant) and its link closes. A participant
                // linking again (its process restarted) lost its pseudonym key: the attempt
                // restarts without it.
                info!(
                    "setup: client {} linked during the setup: no slot this epoch; it is told \
                     so and waits for the next epoch",
                    desc.clients[i].name
                );
                if links.remove(&Who::Client(i)).is_some() {
                    let why = format!("client {} linked again", desc.clients[i].name);
                    departed(relay.leave(i as u16), &why);
                    late.push(tx);
                } else {
                    let _ = tx.try_send(open.clone());
                }
            }
            Ev::Left(w, serial) => {
                if links.get(&w).is_none_or(|(s, _)| *s != serial) {
                    // A link already replaced, or one the relay closed (a latecomer's).
                    continue;
                }
                links.remove(&w);
                match w {
                    Who::Client(i) => {
                        warn!(
                            "setup: client {} left during the setup",
                            desc.clients[i].name
                        );
                        let why = format!("client {} left", desc.clients[i].name);
                        departed(relay.leave(i as u16), &why);
                    }
                    Who::Trustee(j) if relay.trustees() & (1 << j) == 0 => {
                        info!("setup: convicted trustee {} left", desc.trustees[j].name);
                    }
                    Who::Trustee(j) => {
                        warn!(
                            "setup: trustee {} left during the setup; waiting up to {} s for \
                             it to link again",
                            desc.trustees[j].name,
                            STALL.as_secs()
                        );
                        trustees_away.push(j);
                    }
                }
            }
            Ev::Frame(Who::Client(i), body) => {
                if let Err(e) = relay.receive_client(i as u16, &body) {
                    warn!(
                        "setup: client {}: submission refused: {e:?}",
                        desc.clients[i].name
                    );
                }
            }
            Ev::Frame(Who::Trustee(j), body) => match relay.receive_trustee(j as u8, &body) {
                RelayStep::Refuse(f) => {
                    let stale = SetupMessage::parse(&body)
                        .is_ok_and(|m| relay.attempt().is_some_and(|a| m.epoch_attempt().1 < a));
                    if stale || relay.waiting() == Waiting::Open {
                        // A frame of an attempt given up on: expected after a restart.
                        debug!(
                            "setup: trustee {}: frame of an earlier attempt",
                            desc.trustees[j].name
                        );
                    } else {
                        warn!(
                            "setup: trustee {}: frame refused: {f}",
                            desc.trustees[j].name
                        )
                    }
                }
                RelayStep::Forward => {
                    if let Some((w, _)) = turn {
                        // The awaited trustee is sending: its bound starts again.
                        turn = Some((w, tokio::time::Instant::now()));
                    }
                    attempt_frames.push(framed(&body));
                    broadcast(&links, &body);
                }
                RelayStep::ForwardEstablished => {
                    attempt_frames.push(framed(&body));
                    broadcast(&links, &body);
                }
                RelayStep::ForwardAndRestart(c) => {
                    broadcast(&links, &body);
                    attempt_frames.push(framed(&body));
                    kept.records.push(std::mem::take(&mut attempt_frames));
                    kept.save(key_file)?;
                    let t = &desc.trustees[usize::from(c.trustee)];
                    warn!(
                        "setup: CONVICTED trustee {} ({}): {c}; evidence, its signed message: \
                         {}; a new attempt starts without it",
                        t.name,
                        t.fingerprint(),
                        hex::encode(relay.evidence())
                    );
                }
                RelayStep::ForwardAndStop(f) => {
                    broadcast(&links, &body);
                    if let Failure::TooFewTrustees { conviction, .. } = f {
                        let t = &desc.trustees[usize::from(conviction.trustee)];
                        warn!(
                            "setup: CONVICTED trustee {} ({}): {conviction}; evidence, its \
                             signed message: {}",
                            t.name,
                            t.fingerprint(),
                            hex::encode(relay.evidence())
                        );
                    }
                    flush(links).await;
                    bail!(
                        "setup of epoch {} failed: {}",
                        setup.epoch,
                        describe(desc, f)
                    );
                }
            },
        }
    }
    acceptor.abort();
    let Some(established) = relay.established() else {
        bail!("setup: not established");
    };
    let slots = slots_of(relay.pseudonyms())?;
    let members = Members::of(&established, relay.participants(), desc);
    flush(links).await;
    let open = open.get(4..).unwrap_or(&[]).to_vec();
    // The epoch trustees' records, kept for a trustee that lost the epoch (rejoin links).
    let records: Vec<Vec<u8>> = attempt_frames
        .iter()
        .filter_map(|f| f.get(4..))
        .filter(|b| matches!(SetupMessage::parse(b), Ok(SetupMessage::Record(_))))
        .map(<[u8]>::to_vec)
        .collect();
    let group = settle(
        desc,
        &setup,
        &established,
        slots,
        &members,
        Settled {
            pseudonym: None,
            open: Some(&open),
            records: &records,
            silenced: relay.silenced(),
        },
        key_file,
    )?;
    // Only once the epoch file is written: a relay that restarts in between rejoins the
    // epoch rather than opening a setup no node takes part in.
    SetupFile::remove(key_file);
    let absent = Absent::new(desc, setup.link_ids(), &members.clients, &open);
    let slots = slots_of(relay.pseudonyms())?;
    let rejoining = Rejoining::new(desc, &members.trustees, &open, &records, &slots);
    Ok((group, local, Leaving::serving(serving, absent, rejoining)))
}

/// Sends a member that links the frames of every attempt that convicted a trustee, in
/// order (docs/protocol.md §11, "Restarts"): a node that went past them ignores them; one
/// started afresh checks each conviction itself before it follows the next `Open`.
fn show_records(tx: &mpsc::Sender<Bytes>, records: &[Vec<Bytes>]) {
    for frame in records.iter().flatten() {
        let _ = tx.try_send(frame.clone());
    }
}

/// What the relay keeps of a setup under way beside its key file (`FILE.setup`), so that
/// a restarted relay goes on where it stopped: the next attempt it may open (never one it
/// opened before) and the frames of each attempt that convicted a trustee. Public data
/// only (every byte was broadcast); removed once the epoch is established.
#[derive(Serialize, Deserialize)]
struct SetupFile {
    format: String,
    group: String,
    epoch: u64,
    next_attempt: u8,
    /// Trustees left out as silent or absent (bit `j`: trustee `j`).
    #[serde(default)]
    silent: u16,
    /// Each attempt that convicted: its frames, hex, as broadcast (`Length ‖ Body`).
    #[serde(with = "records_hex")]
    records: Vec<Vec<Bytes>>,
}

const SETUP_FORMAT: &str = "dissent-setup/1";

mod records_hex {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(r: &[Vec<Bytes>], s: S) -> Result<S::Ok, S::Error> {
        let hex: Vec<Vec<String>> = r
            .iter()
            .map(|a| a.iter().map(hex::encode).collect())
            .collect();
        hex.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<Bytes>>, D::Error> {
        let hex: Vec<Vec<String>> = Vec::deserialize(d)?;
        hex.into_iter()
            .map(|a| {
                a.into_iter()
                    .map(|h| {
                        hex::decode(h)
                            .map(Bytes::from)
                            .map_err(serde::de::Error::custom)
                    })
                    .collect()
            })
            .collect()
    }
}

impl SetupFile {
    fn path(key_file: &Path) -> PathBuf {
        let mut name = key_file.as_os_str().to_owned();
        name.push(".setup");
        PathBuf::from(name)
    }

    /// The kept setup of this group version, or a new one.
    fn load(key_file: &Path, desc: &GroupDesc) -> Result<SetupFile> {
        let fresh = SetupFile {
            format: SETUP_FORMAT.to_string(),
            group: desc.fingerprint(),
            epoch: epoch_of(desc),
            next_attempt: 0,
            silent: 0,
            records: Vec::new(),
        };
        let path = Self::path(key_file);
        if !path.exists() {
            return Ok(fresh);
        }
        let kept: SetupFile = crate::config::read_private_json(&path)?;
        if kept.format != SETUP_FORMAT || kept.group != fresh.group || kept.epoch != fresh.epoch {
            return Ok(fresh);
        }
        info!(
            "setup: going on with the setup this relay began before it restarted ({}): next              attempt {}, {} attempt(s) that convicted",
            path.display(),
            kept.next_attempt,
            kept.records.len()
        );
        Ok(kept)
    }

    fn save(&self, key_file: &Path) -> Result<()> {
        crate::config::replace_json(&Self::path(key_file), self, Access::Private)
    }

    fn remove(key_file: &Path) {
        let _ = std::fs::remove_file(Self::path(key_file));
    }
}

/// The relay side of a setup link's handshake, with the DC-net links' replay check: a
/// request whose ephemeral key was authenticated within the window is refused before any
/// key exchange, so a replayed handshake never stands in for a member's link.
async fn accept_setup<R, W, T>(
    r: R,
    w: W,
    relay_key: &[u8; 32],
    ids: &[([u8; 16], [u8; 16])],
    replays: &crate::relay::admission::Replays,
    admit: impl FnOnce(usize, &[u8; 32]) -> Option<T>,
) -> Result<(T, crate::link::LinkReader<R>, crate::link::LinkWriter<W>)>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use crate::relay::admission::Ephemeral;
    let mut ephemeral = None;
    let admitted = crate::link::accept_checked(
        r,
        w,
        relay_key,
        ids,
        |request| {
            ephemeral = Some(Ephemeral::of(request));
            replays.check(std::time::Instant::now(), request)
        },
        admit,
    )
    .await?;
    if let Some(e) = ephemeral {
        replays.insert(std::time::Instant::now(), e)?;
    }
    Ok(admitted)
}

/// Lets every link's writer send what it holds, then closes the links.
async fn flush(links: Links) {
    let pending: Vec<_> = links.into_values().map(|(_, tx)| tx).collect();
    // The writers end once their queue is empty and its sender gone; give them a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for tx in &pending {
        while tx.capacity() < tx.max_capacity() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    drop(pending);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Logs what a participant's departure did to the setup (a stop is reported by the caller,
/// from the relay's failure).
fn departed(departure: Departure, why: &str) {
    match departure {
        Departure::Ignored => {}
        Departure::Restart { remaining } => info!(
            "setup: {}a new attempt starts over the {remaining} participants that remain",
            if why.is_empty() {
                String::new()
            } else {
                format!("{why}: ")
            }
        ),
        Departure::Stop(f) => warn!(
            "setup: {}{f}",
            if why.is_empty() {
                String::new()
            } else {
                format!("{why}: ")
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::admission::{Refusal, Replays};
    use dissent_core::crypto::public_key;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_replayed_setup_handshake_is_refused() {
        let (node, relay) = ([3u8; 32], [4u8; 32]);
        let ids = [([1u8; 16], [2u8; 16])];
        let replays = Replays::new(Duration::from_secs(60), 16);
        // The bytes a member's handshake request takes on the wire, as an eavesdropper
        // records them.
        let (a, b) = tokio::io::duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (mut br, _bw) = tokio::io::split(b);
        let relay_pub = public_key(&relay);
        let dialing = tokio::spawn(async move {
            let _ = crate::link::connect(ar, aw, &node, &relay_pub, &[1; 16], &[2; 16]).await;
        });
        let mut len = [0u8; 2];
        br.read_exact(&mut len).await.unwrap();
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
        br.read_exact(&mut request).await.unwrap();
        dialing.abort();
        let send = |bytes: Vec<u8>| async move {
            let (a, b) = tokio::io::duplex(1 << 16);
            let (_ar, mut aw) = tokio::io::split(a);
            let (br, bw) = tokio::io::split(b);
            aw.write_all(&bytes).await.unwrap();
            (br, bw, _ar, aw)
        };
        let wire = [len.to_vec(), request].concat();

        // The first time it admits the member; the same bytes again are refused as a
        // replay, and the member's key is never looked up.
        let (br, bw, _keep_r, _keep_w) = send(wire.clone()).await;
        let first = accept_setup(br, bw, &relay, &ids, &replays, |n, k| Some((n, *k))).await;
        assert_eq!(first.unwrap().0, (0, public_key(&node)));
        let (br, bw, _keep_r, _keep_w) = send(wire).await;
        let mut looked_up = false;
        let again = accept_setup(br, bw, &relay, &ids, &replays, |_, _| {
            looked_up = true;
            Some(())
        })
        .await;
        let err = again.err().unwrap();
        assert!(
            err.to_string().contains(&Refusal::Replayed.to_string()),
            "{err:#}"
        );
        assert!(!looked_up);
        assert_eq!(replays.refused(), 1);
    }
}
