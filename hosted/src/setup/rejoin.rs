//! Rejoin links (docs/protocol.md §11, "Rejoin links"): the relay of an established epoch
//! gives its records and pseudonym list back to a trustee of the epoch that lost it
//! ([`Rejoining`]), and a hosted trustee with no kept epoch asks for them before it sets
//! up ([`take_back`]), so a trustee stopped between the establishment and keeping the epoch
//! (a crash, a kill) serves again with no new setup. A device trustee's setup image dials
//! the same link itself (`embedded/src/bin/trustee-setup.rs`).
//!
//! Owns the hosted side of the rejoin link, relay and trustee; what is taken back is the
//! core's decision (`dissent_core::epoch::rejoin`).

use std::time::Duration;

use dissent_core::epoch::rejoin::{encode_list, Rejoin, LIST_KEYS_PER_FRAME};
use tokio::net::TcpStream;

use super::*;

/// How long a rejoin link may take from the handshake to the relay's last frame.
const TAKE_BACK_WITHIN: Duration = Duration::from_secs(30);

/// What the relay of an established epoch serves its trustees on rejoin links: the `Open`
/// of the attempt that established it, every epoch trustee's `Record`, then the list.
pub struct Rejoining {
    /// The rejoin link's (group id, session id).
    pub(super) ids: ([u8; 16], [u8; 16]),
    /// Link key → name of each trustee of the epoch.
    trustees: HashMap<[u8; 32], String>,
    /// The frames, framed.
    frames: Vec<Bytes>,
}

impl Rejoining {
    /// The frames for `desc`'s epoch (`trustees`: indices into the version's) from its
    /// `Open`, its records and its pseudonym keys; `None` without an `Open` or records (a
    /// relay's epoch file from before rejoin links).
    pub(super) fn new(
        desc: &GroupDesc,
        trustees: &[usize],
        open: &[u8],
        records: &[Vec<u8>],
        slots: &[Key],
    ) -> Option<Rejoining> {
        let Ok(SetupMessage::Open(o)) = SetupMessage::parse(open) else {
            return None;
        };
        if records.is_empty() || slots.is_empty() {
            return None;
        }
        let digest = desc.digest();
        let mut frames = vec![framed(open)];
        frames.extend(records.iter().map(|r| framed(r)));
        let keys: Vec<u8> = slots.concat();
        let mut buf = vec![0u8; 4096];
        for (n, chunk) in keys.chunks(32 * LIST_KEYS_PER_FRAME).enumerate() {
            let first = u16::try_from(n * LIST_KEYS_PER_FRAME).ok()?;
            let len = encode_list(o.epoch, o.attempt, first, chunk, &mut buf).ok()?;
            frames.push(framed(buf.get(..len)?));
        }
        Some(Rejoining {
            ids: (
                session::group_id(&digest),
                session::rejoin_session(&digest, epoch_of(desc)),
            ),
            trustees: trustees
                .iter()
                .filter_map(|&j| desc.trustees.get(j))
                .map(|t| (t.link, t.name.clone()))
                .collect(),
            frames,
        })
    }

    /// The trustee's name, if `key` is the link key of a trustee of the epoch.
    pub(super) fn admit(&self, key: &[u8; 32]) -> Option<String> {
        self.trustees.get(key).cloned()
    }

    /// Sends the frames to trustee `name`; the caller then closes the link.
    pub(super) async fn serve(&self, name: &str, tx: mpsc::Sender<Bytes>) {
        for f in &self.frames {
            if tx.send(f.clone()).await.is_err() {
                return;
            }
        }
        info!(
            "rejoin: trustee {name} linked with no epoch kept: sent it the epoch's records and \
             pseudonym list, which it takes back only with its own signature on them"
        );
    }
}

/// A trustee of `desc` (at `index` in the version) with no epoch of it kept asks the relay
/// for the epoch on a rejoin link. The epoch when the relay serves one this trustee signed
/// (kept beside `key_file` before it is returned), `None` when the relay is setting the
/// version up (it closes the link before any frame, or refuses it) and the trustee takes
/// part in the setup. Waits for a
/// relay that cannot be reached yet, as the setup's dial would.
pub async fn take_back(
    desc: &GroupDesc,
    keys: &PrivateKeys,
    key_file: &Path,
    index: usize,
    relay_addr: &str,
) -> Result<Option<(Group, NodeSecrets)>> {
    let Some(relay_keys) = &desc.relay else {
        bail!("the group has no relay key");
    };
    let setup = Setup::new(desc)?;
    let digest = desc.digest();
    let (group_id, session_id) = (
        session::group_id(&digest),
        session::rejoin_session(&digest, setup.epoch),
    );
    let mut wait = Duration::from_millis(100);
    let stream = loop {
        match TcpStream::connect(relay_addr).await {
            Ok(s) => break s,
            Err(e) => {
                if wait == Duration::from_millis(100) {
                    info!("rejoin: relay {relay_addr} not reachable yet ({e}); retrying");
                }
                debug!("rejoin: relay {relay_addr} not reachable ({e}); trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
        }
    };
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let link = crate::link::connect(r, w, &keys.link, &relay_keys.link, &group_id, &session_id);
    let (mut frames, _writer) = match link.await {
        Ok(l) => l,
        Err(e) => {
            debug!("rejoin: the relay refused the rejoin link ({e})");
            return Ok(None);
        }
    };
    let config = setup.config();
    let storage = vec![0u8; Rejoin::<Vec<u8>>::storage_len(&config)];
    let j = u8::try_from(index).map_err(|_| anyhow!("trustee index {index}"))?;
    let mut rejoin = Rejoin::new(config, j, storage).map_err(|e| anyhow!("rejoin: {e:?}"))?;
    let taking = async {
        let mut first = true;
        loop {
            let frame = match frames.next().await {
                Ok(Some(f)) => f,
                // Closed before any frame: a relay setting the version up.
                Ok(None) | Err(_) if first => return Ok(None),
                Ok(None) | Err(_) => return Err(rejoin.ended()),
            };
            first = false;
            if let Some(e) = rejoin.receive(&frame)? {
                return Ok(Some(e));
            }
        }
    };
    let established = match tokio::time::timeout(TAKE_BACK_WITHIN, taking).await {
        Ok(Ok(Some(e))) => e,
        Ok(Ok(None)) => {
            debug!("rejoin: the relay closed the rejoin link: no epoch of this version yet");
            return Ok(None);
        }
        Ok(Err(e)) => bail!(
            "rejoin: the relay serves epoch {} of this version, and what it sent is refused: \
             {e}",
            setup.epoch
        ),
        Err(_) => bail!(
            "rejoin: the relay sent epoch {}'s records and list too slowly",
            setup.epoch
        ),
    };
    let slots = slots_of(rejoin.pseudonyms())?;
    let members = Members::of(&established, rejoin.participants(), desc);
    let role = members
        .role(Role::Trustee(index))
        .ok_or_else(|| anyhow!("rejoin: this trustee is not a member of the epoch"))?;
    let session_id = session::session_id(&digest, &established);
    EpochFile::new(desc, session_id, &slots, &members, None).save(key_file)?;
    info!(
        "setup: took epoch {} (session {}) back from the relay: its record signed by this \
         trustee and by every trustee of the epoch, {} slots; kept in {}: no new setup",
        established.epoch,
        hex::encode(session_id),
        established.slots,
        EpochFile::path(key_file).display()
    );
    let group = EpochFile::load(key_file, desc)?
        .ok_or_else(|| anyhow!("rejoin: the epoch just kept does not read back"))?
        .group(desc)?;
    Ok(Some((group, node_secrets(keys, role, None))))
}
