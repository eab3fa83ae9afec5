//! `dissent blame verify`: checks a blame round's evidence file offline, from the group's
//! public keys only (the checks are the core's, `dissent_core::blame::verify`).
//!
//! Owns the command; it must not judge anything itself.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use dissent_core::blame::{self, BlameKind, Culprit, Directory, MemberKeys};

use crate::config;

/// Blame evidence.
#[derive(Subcommand, Debug)]
pub enum BlameCommand {
    /// Check an evidence file (`blame-<interval>-<exchange>`) from public keys only:
    /// the accusation's proof, every reveal's signature, a dispute's DLEQ proof and pad
    /// bit, and the verdict they force. Exit status 0 only if it holds.
    Verify(VerifyArgs),
}

/// Arguments of `blame verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The evidence file.
    file: PathBuf,
    /// The configuration folder (system.json, session.json, pseudonym.json), or a group
    /// folder (group.json) with --epoch.
    #[arg(long, value_name = "DIR", default_value = ".")]
    group: PathBuf,
    /// With a group folder: a node's key file whose saved epoch (KEY_FILE.epoch) names
    /// the session and the slots' pseudonym keys.
    #[arg(long, value_name = "KEY_FILE")]
    epoch: Option<PathBuf>,
    /// Print what the evidence shows as JSON.
    #[arg(long)]
    json: bool,
}

struct Keys(config::Group);

impl Directory for Keys {
    fn client(&self, index: u16) -> Option<MemberKeys> {
        let i = usize::from(index);
        Some(MemberKeys {
            identity: self.0.clients.get(i)?.identity,
            dh: *self.0.client_session_keys.get(i)?,
        })
    }
    fn trustee(&self, index: u16) -> Option<MemberKeys> {
        let i = usize::from(index);
        Some(MemberKeys {
            identity: self.0.trustees.get(i)?.identity,
            dh: *self.0.trustee_session_keys.get(i)?,
        })
    }
    fn pseudonym(&self, slot: u16) -> Option<[u8; 32]> {
        self.0.slots.get(usize::from(slot)).copied()
    }
}

fn load_group(dir: &Path, epoch: Option<&Path>) -> Result<config::Group> {
    if config::group::is_group_folder(dir) {
        let Some(key_file) = epoch else {
            bail!(
                "{} is a group folder: name a node's key file with --epoch (its saved epoch \
                 holds the slots' pseudonym keys)",
                dir.display()
            );
        };
        crate::setup::saved_group(dir, key_file)
    } else {
        config::Group::load(dir)
    }
}

fn name(group: &config::Group, who: Culprit) -> String {
    match who {
        Culprit::Client(i) => group
            .clients
            .get(usize::from(i))
            .map_or(format!("client {i}"), |c| format!("client {i} ({})", c.id)),
        Culprit::Trustee(j) => group
            .trustees
            .get(usize::from(j))
            .map_or(format!("trustee {j}"), |t| {
                format!("trustee {j} ({})", t.id)
            }),
        Culprit::Relay => "the relay".to_string(),
    }
}

fn kind_name(kind: BlameKind) -> &'static str {
    match kind {
        BlameKind::Disrupted => "disrupted",
        BlameKind::LiedAboutPad => "lied-about-pad",
        BlameKind::ForgedDecoding => "forged-decoding",
        BlameKind::RefusedBlame => "refused-blame",
    }
}

/// Runs a `blame` command.
pub fn run(command: BlameCommand) -> Result<()> {
    let BlameCommand::Verify(a) = command;
    let bytes =
        std::fs::read(&a.file).with_context(|| format!("{}: cannot read", a.file.display()))?;
    let group = load_group(&a.group, a.epoch.as_deref())?;
    let keys = Keys(group);
    let v = blame::verify(&bytes, &keys)
        .map_err(|e| anyhow::anyhow!("{}: refused: {e}", a.file.display()))?;
    let who = name(&keys.0, v.who);
    if a.json {
        let (role, index) = match v.who {
            Culprit::Client(i) => ("client", Some(i)),
            Culprit::Trustee(j) => ("trustee", Some(j)),
            Culprit::Relay => ("relay", None),
        };
        let view = serde_json::json!({
            "interval": v.interval,
            "exchange": v.exchange,
            "bit": v.bit,
            "slot": v.slot,
            "grounds": if v.trap { "trap" } else { "accusation" },
            "who": { "role": role, "index": index, "name": who },
            "kind": kind_name(v.kind),
            "offline_verifiable": v.offline,
            "decoded_cell_sha256": hex::encode(v.decoded_hash),
            "dispute": v.dispute.map(|d| serde_json::json!({
                "client": d.client,
                "trustee": d.trustee,
                "proven_by": if d.by_trustee { "trustee" } else { "client" },
            })),
        });
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let what = match v.kind {
        BlameKind::Disrupted => "its signed cell bit is not the XOR of its own signed pad bits",
        BlameKind::LiedAboutPad => {
            "its signed pad bit differs from the one the pair's proven secret gives"
        }
        BlameKind::ForgedDecoding => {
            "every reveal is consistent: the cells XOR to 0 at the bit the relay decoded as 1"
        }
        BlameKind::RefusedBlame => "it refused blame (the relay's own observation)",
    };
    let grounds = if v.trap {
        "a sprung trap (its proof checked)"
    } else {
        "the slot owner's accusation (its proof checked)"
    };
    println!(
        "interval {} exchange {} bit {} (slot {}, on {grounds}): {who} blamed, {}: {what}",
        v.interval,
        v.exchange,
        v.bit,
        v.slot,
        kind_name(v.kind)
    );
    if v.offline {
        println!("verified from public keys only");
    } else {
        println!("not offline-verifiable: the signatures it holds are valid");
    }
    if let Some(d) = v.dispute {
        let (client, trustee) = (Culprit::Client(d.client), Culprit::Trustee(d.trustee));
        let prover = if d.by_trustee { trustee } else { client };
        println!(
            "the dispute of {} and {} settled by {}'s proof of their secret",
            name(&keys.0, client),
            name(&keys.0, trustee),
            name(&keys.0, prover)
        );
    }
    println!("decoded cell SHA-256 {}", hex::encode(v.decoded_hash));
    Ok(())
}

#[cfg(all(test, feature = "tools"))]
mod tests {
    use super::*;
    use crate::config::{generate, load_node, GenerateOptions, NodeKind};
    use dissent_core::pseudonym::PseudonymKey;
    use dissent_core::testkit::blame::{rng, Answer, BlameGroup, Culpable, Misdeed, Node};

    /// A generated configuration, and a blame round over its real keys in which client 3
    /// garbles client 1's slot and lies about a pad bit (one seed) or not (another).
    fn round(dir: &Path, answer: Answer, seed: u64) -> (Culprit, BlameKind, Vec<u8>) {
        let group = config::Group::load(dir).unwrap();
        let node = |name: &str, kind| load_node(&group, &dir.join(name), kind).unwrap();
        let clients: Vec<_> = (0..group.clients.len())
            .map(|i| node(&format!("client-{i}.json"), NodeKind::Client))
            .collect();
        let trustees: Vec<_> = (0..group.trustees.len())
            .map(|j| node(&format!("trustee-{j}.json"), NodeKind::Trustee))
            .collect();
        let nodes = |list: &[config::NodeSecrets]| -> Vec<Node> {
            list.iter()
                .map(|s| Node::new(&s.identity_private_key, &s.session_private_key.unwrap()))
                .collect()
        };
        let pseudonyms: Vec<[u8; 32]> = clients
            .iter()
            .map(|c| c.pseudonym_private_key.unwrap())
            .collect();
        let mut rng = rng(seed);
        let mut g = BlameGroup::new(
            group.group_id,
            group.session_id,
            nodes(&clients),
            nodes(&trustees),
            &pseudonyms,
            &mut rng,
        );
        g.slots = pseudonyms
            .iter()
            .map(|p| {
                let public = PseudonymKey::from_secret(p).unwrap().public();
                group.slots.iter().position(|s| *s == public).unwrap() as u16
            })
            .collect();
        let ((who, kind), evidence, _) = g.disrupt_until_blamed(
            1,
            group.cell_length,
            Culpable::Client(3),
            Misdeed::Garble,
            answer,
            &mut rng,
        );
        (who, kind, evidence)
    }

    fn verify(file: &Path, dir: &Path) -> Result<()> {
        run(BlameCommand::Verify(VerifyArgs {
            file: file.to_path_buf(),
            group: dir.to_path_buf(),
            epoch: None,
            json: true,
        }))
    }

    #[test]
    fn verifies_evidence_made_with_a_configurations_keys_and_refuses_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let opts = GenerateOptions {
            clients: 5,
            trustees: 2,
            ..GenerateOptions::default()
        };
        generate(dir.path(), &opts).unwrap();
        for (answer, kind) in [
            (Answer::Truthful, BlameKind::Disrupted),
            (Answer::LieAboutPad, BlameKind::LiedAboutPad),
        ] {
            let (who, got, evidence) = round(dir.path(), answer, 7);
            assert_eq!((who, got), (Culprit::Client(3), kind));
            let file = dir.path().join("blame-9-0");
            std::fs::write(&file, &evidence).unwrap();
            verify(&file, dir.path()).unwrap();
            // A signature's byte changed: refused, naming why.
            let mut bad = evidence.clone();
            let at = bad.len() - 10;
            bad[at] ^= 1;
            std::fs::write(&file, &bad).unwrap();
            let err = format!("{:#}", verify(&file, dir.path()).unwrap_err());
            assert!(err.contains("refused"), "{err}");
        }
        // Another group's keys: refused.
        let other = tempfile::tempdir().unwrap();
        generate(other.path(), &opts).unwrap();
        let (_, _, evidence) = round(dir.path(), Answer::Truthful, 8);
        let file = dir.path().join("blame-9-1");
        std::fs::write(&file, &evidence).unwrap();
        verify(&file, dir.path()).unwrap();
        assert!(verify(&file, other.path()).is_err());
    }
}
