//! A trustee's or client's part of the setup: its setup link to the relay, its
//! `SetupTrustee` or `SetupClient`, linking again when the link drops, and waiting for the
//! next epoch when the epoch left it out.
//!
//! Owns a node's setup link; the decisions are the core's.

use super::*;

/// How this process's trustee cheats in its setups (`dissent trustee --cheat`, tests only).
#[cfg(feature = "disruptor")]
static CHEAT: std::sync::OnceLock<dissent_core::epoch::Cheat> = std::sync::OnceLock::new();

/// Makes this process's trustee cheat in every setup it runs, as `mode` says (tests only).
#[cfg(feature = "disruptor")]
pub fn cheat(mode: &str) -> Result<()> {
    use dissent_core::epoch::Cheat;
    let cheat = match mode {
        "swap" => Cheat::Swap,
        "replace" => Cheat::Replace,
        "duplicate" => Cheat::Duplicate,
        "reencryption" => Cheat::Reencryption,
        "share" => Cheat::Share,
        "key-proof" => Cheat::KeyProof,
        other => bail!(
            "--cheat {other}: one of swap, replace, duplicate, reencryption, share, key-proof"
        ),
    };
    let _ = CHEAT.set(cheat);
    warn!("this trustee cheats in its setups on purpose (--cheat {mode}): a test");
    Ok(())
}

enum Machine {
    Trustee(Box<SetupTrustee<'static, Vec<u8>, Vec<ProverSlot>, Ed25519Identity>>),
    Client(Box<SetupClient<'static, Vec<u8>, Ed25519Identity>>),
}

/// A trustee's or client's part: links to the relay, runs the setup, and returns the
/// epoch's group and this node's secrets for it.
pub async fn node(
    desc: &GroupDesc,
    keys: &PrivateKeys,
    key_file: &Path,
    relay_addr: String,
) -> Result<(Group, NodeSecrets)> {
    let Some(relay_keys) = &desc.relay else {
        bail!("the group has no relay key");
    };
    let own = keys.public();
    let (role, list) = match keys.role {
        KeyRole::Trustee => (Role::Trustee(0), &desc.trustees),
        KeyRole::Client => (Role::Client(0), &desc.clients),
        KeyRole::Relay => bail!("a relay key runs `dissent relay`"),
    };
    let Some(index) = list.iter().position(|k| *k == own) else {
        bail!(
            "{} {} ({}) is not a {} of group version {} ({}): refused",
            keys.role,
            keys.name,
            own.fingerprint(),
            keys.role,
            desc.version,
            desc.fingerprint()
        );
    };
    let role = match role {
        Role::Trustee(_) => Role::Trustee(index),
        _ => Role::Client(index),
    };
    if let Some(kept) = saved(desc, keys, key_file, role)? {
        return Ok(kept);
    }
    // A trustee with no epoch kept may have stopped after the epoch was established and
    // before it kept it: the relay serving the epoch gives it back (with this trustee's own
    // signature on it); a relay setting the version up refuses the rejoin link.
    if let Role::Trustee(j) = role {
        if let Some(taken) = super::take_back(desc, keys, key_file, j, &relay_addr).await? {
            return Ok(taken);
        }
    }
    // The machines borrow the setup for the process's life (one setup per process).
    let setup: &'static Setup = Box::leak(Box::new(Setup::new(desc)?));
    let config = setup.config();
    let identity = IdentityKey::from_bytes(&keys.identity);
    let mut machine = match role {
        Role::Trustee(j) => {
            #[allow(unused_mut)]
            let mut trustee = SetupTrustee::new(
                config,
                j as u8,
                identity,
                SetupStorage::with_vecs(&config),
                vec![ProverSlot::EMPTY; desc.clients.len()],
            )
            .map_err(|e| anyhow!("setup: {e:?}"))?;
            #[cfg(feature = "disruptor")]
            if let Some(c) = CHEAT.get() {
                trustee.cheat(*c);
            }
            Machine::Trustee(Box::new(trustee))
        }
        _ => Machine::Client(Box::new(
            SetupClient::new(
                config,
                index as u16,
                identity,
                SetupStorage::with_vecs(&config),
            )
            .map_err(|e| anyhow!("setup: {e:?}"))?,
        )),
    };
    let (group_id, setup_id) = setup.link_ids();
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    // Until the relay reaches this epoch's setup (a new member waits through the running
    // epoch), it refuses the link: redial within a second, so the switch's pause stays short.
    let mut dialer = Dialer::with_backoff(
        relay_addr.clone(),
        LinkKeys {
            own: keys.link,
            relay: relay_keys.link,
            group_id,
            session_id: setup_id,
        },
        seed,
        false,
        WAITING,
    );
    info!(
        "setup of epoch {} of group {}: linking to relay {relay_addr}",
        setup.epoch,
        desc.fingerprint()
    );
    let mut link = dialer.dial().await;
    info!("setup: linked; waiting for the relay to open the setup");
    let mut out = vec![0u8; dissent_core::epoch::message::CHUNK_HEADER_LEN + MAX_CHUNK_DATA];
    let mut rng = OsRng;
    // Trustees this node convicted (the others left out of the epoch, if any, were left
    // out as silent on the relay's word).
    let mut convicted: u16 = 0;
    loop {
        // This node's frames first (a trustee's key, shuffle, shares, record; a submission).
        let mut lost: Option<String> = None;
        loop {
            let frame: Option<Vec<u8>> = match &mut machine {
                Machine::Trustee(t) => t
                    .poll_transmit(&mut out)
                    .map_err(|e| anyhow!("setup: cannot encode a frame: {e:?}"))?
                    .map(|n| out[..n].to_vec()),
                Machine::Client(c) => c.poll_transmit().map(|f| f.to_vec()),
            };
            let Some(frame) = frame else { break };
            let f = framed(&frame);
            if !link.sink.has_room() {
                if let Err(e) = link.sink.flush().await {
                    lost = Some(e.to_string());
                    break;
                }
            }
            let room = link.sink.room();
            if room.len() < f.len() {
                bail!("setup: a frame of {} bytes does not fit the link", f.len());
            }
            room[..f.len()].copy_from_slice(&f);
            link.sink.commit(f.len());
        }
        if lost.is_none() {
            if let Err(e) = link.sink.flush().await {
                lost = Some(e.to_string());
            }
        }
        let body = match lost {
            Some(why) => Err(why),
            None => match tokio::time::timeout(STALL, link.frames.next()).await {
                Ok(Ok(Some(b))) => Ok(b),
                Ok(Ok(None)) => Err("the relay closed it".to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => {
                    let f = match &mut machine {
                        Machine::Trustee(t) => t.stalled(),
                        Machine::Client(c) => c.stalled(),
                    };
                    bail!(
                        "setup of epoch {} failed: {}",
                        setup.epoch,
                        describe(desc, f)
                    );
                }
            },
        };
        let body = match body {
            Ok(body) => body,
            Err(why) => {
                // Frames were lost: the relay starts a new attempt (without this client, which
                // then waits for the next epoch; with this trustee once it is back).
                warn!("setup: the link to the relay dropped ({why}); linking again");
                link = dialer.dial().await;
                continue;
            }
        };
        let event = match &mut machine {
            Machine::Trustee(t) => t.receive(&body, &mut rng),
            Machine::Client(c) => c.receive(&body, &mut rng),
        };
        match event {
            Ok(Event::Progress) => {}
            Ok(Event::Opened) => {
                let left_out: Vec<&str> = match SetupMessage::parse(&body) {
                    Ok(SetupMessage::Open(o)) => desc
                        .trustees
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j < 16 && o.trustees & (1 << j) == 0)
                        .filter(|&(j, _)| convicted & (1 << j) == 0)
                        .map(|(_, t)| t.name.as_str())
                        .collect(),
                    _ => Vec::new(),
                };
                if left_out.is_empty() {
                    info!("setup: attempt opened");
                } else {
                    warn!(
                        "setup: attempt opened without trustees {}, left out as silent or \
                         absent on the relay's word (nothing proves it; the group's \
                         min_trustees allows it)",
                        left_out.join(", ")
                    );
                }
            }
            Ok(Event::KeysComplete) => info!("setup: every trustee's key is in"),
            Ok(Event::ListReady) => info!("setup: pseudonym list decrypted"),
            Ok(Event::Restarting(c)) => {
                convicted |= 1u16.checked_shl(u32::from(c.trustee)).unwrap_or(0);
                let evidence = match &machine {
                    Machine::Trustee(t) => hex::encode(t.evidence()),
                    Machine::Client(c) => hex::encode(c.evidence()),
                };
                warn!(
                    "setup: CONVICTED trustee {}: {c}; evidence, its signed message: {evidence}; \
                     the relay restarts without it",
                    desc.trustees
                        .get(usize::from(c.trustee))
                        .map_or("?", |t| t.name.as_str())
                )
            }
            Ok(Event::Established) => break,
            Err(Failure::Refused(Refusal::NotParticipant)) if keys.role == KeyRole::Client => {
                warn!(
                    "setup: client {} has no slot in epoch {}: it was not linked when the relay \
                     opened the setup (or its link dropped during it); it waits for the next \
                     epoch, which takes it in (the relay announces it at the group's next \
                     switch)",
                    keys.name, setup.epoch
                );
                wait_for_switch(&mut dialer, link).await;
                return Err(anyhow::Error::new(LeftOut {
                    desc: desc.clone(),
                    keys: crate::config::keys::load_private(key_file)?,
                }));
            }
            Err(f) => bail!(
                "setup of epoch {} failed: {}",
                setup.epoch,
                describe(desc, f)
            ),
        }
    }
    let (established, slots, pseudonym, participants) = match &machine {
        Machine::Trustee(t) => (
            t.established(),
            slots_of(t.pseudonyms())?,
            None,
            t.participants().to_vec(),
        ),
        Machine::Client(c) => {
            let slot = c.slot().ok_or_else(|| anyhow!("setup: no slot"))?;
            let secret = c
                .pseudonym()
                .ok_or_else(|| anyhow!("setup: no pseudonym key"))?
                .to_bytes();
            (
                c.established(),
                slots_of(c.pseudonyms())?,
                Some((secret, usize::from(slot))),
                c.participants().to_vec(),
            )
        }
    };
    let established = established.ok_or_else(|| anyhow!("setup: not established"))?;
    let members = Members::of(&established, &participants, desc);
    let role = members
        .role(role)
        .ok_or_else(|| anyhow!("setup: this node is not a member of the epoch it set up"))?;
    let group = settle(
        desc,
        setup,
        &established,
        slots,
        &members,
        Settled {
            pseudonym,
            open: None,
            records: &[],
            silenced: {
                let all = ((1u32 << desc.trustees.len().min(16)) - 1) as u16;
                all & !established.trustees & !convicted
            },
        },
        key_file,
    )?;
    Ok((group, node_secrets(keys, role, pseudonym)))
}

/// The epoch kept beside `key_file` ([`EpochFile`]) when it is of the version `desc` and
/// the node, in `role` of the version, is one of its members (a client with its pseudonym):
/// the epoch's group and the node's secrets for it, to rejoin it with no new setup.
pub(super) fn saved(
    desc: &GroupDesc,
    keys: &PrivateKeys,
    key_file: &Path,
    role: Role,
) -> Result<Option<(Group, NodeSecrets)>> {
    let Some(saved) = EpochFile::load(key_file, desc)? else {
        return Ok(None);
    };
    let pseudonym = match (saved.pseudonym()?, saved.slot) {
        (Some(k), Some(slot)) => Some((k, slot)),
        _ => None,
    };
    let members = saved.members(desc);
    if let Some(role) = members.role(role) {
        if keys.role == KeyRole::Trustee || pseudonym.is_some() {
            return Ok(Some((
                saved.group(desc)?,
                node_secrets(keys, role, pseudonym),
            )));
        }
    }
    info!(
        "setup: this node is not a member of the kept epoch {}; setting up anew",
        saved.epoch
    );
    Ok(None)
}

/// A client with no slot this epoch: holds its setup link (the relay holds it until the
/// epoch ends) and dials again when it drops, until the relay announces the next epoch
/// (`Goodbye{Switch}`).
async fn wait_for_switch(dialer: &mut Dialer, mut link: crate::link::dial::Connected) {
    loop {
        match link.frames.next().await {
            Ok(Some(body)) => {
                if SetupMessage::parse(&body).is_ok() {
                    // The relay repeats the `Open` that left it out.
                    continue;
                }
                if let Ok(Message::Goodbye {
                    reason: GoodbyeReason::Switch,
                }) = Message::parse(&body)
                {
                    return;
                }
            }
            Ok(None) | Err(_) => link = dialer.dial().await,
        }
    }
}

/// How a client's setup ends when the epoch left it out and the relay then announced the
/// next epoch: the shell fetches the version after `desc` (as after [`Switching`]) and
/// takes part in its setup.
pub struct LeftOut {
    /// The version whose epoch left it out.
    pub desc: GroupDesc,
    /// The client's keys.
    pub keys: PrivateKeys,
}

impl std::fmt::Debug for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeftOut(version {})", self.desc.version)
    }
}

impl std::fmt::Display for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; this client had no slot in the epoch of version {}",
            Switching, self.desc.version
        )
    }
}

impl std::error::Error for LeftOut {}
