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
            "who": { "role": role, "index": index, "name": who },
            "kind": kind_name(v.kind),
            "offline_verifiable": v.offline,
            "decoded_cell_sha256": hex::encode(v.decoded_hash),
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
    println!(
        "interval {} exchange {} bit {} (slot {}): {who} blamed, {}: {what}",
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
    println!("decoded cell SHA-256 {}", hex::encode(v.decoded_hash));
    Ok(())
}
