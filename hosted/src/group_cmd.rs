//! `dissent key ...` and `dissent group ...`: a node's own keys and a group folder of
//! public files, for groups with no dealer.
//!
//! Owns the command lines and what they print; the formats are `config::keys` and
//! `config::group`'s.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use dissent_core::identity::IdentityKey;

use crate::config::addr::HostPort;
use crate::config::group::{self, GroupPolicy};
use crate::config::keys::{self, KeyRole};
use crate::console;

/// `dissent key ...`.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Make this node's keys: FILE (private, mode 0600) and FILE.pub (public, to hand out).
    New {
        /// What the keys are for: client, trustee or relay.
        #[arg(long)]
        role: KeyRole,
        /// The name the group lists (default: FILE's name without its extension).
        #[arg(long)]
        name: Option<String>,
        /// The private key file to write (refused if it exists).
        file: PathBuf,
    },
    /// Print a key file's fingerprint (FILE.pub, or the public half of FILE).
    Show {
        /// A public or private key file.
        file: PathBuf,
    },
}

/// Policy options of `group new`.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Clients that must take part in an epoch's setup and be online in an interval.
    #[arg(long, value_name = "N", default_value_t = 2)]
    min_clients: u16,
    /// Fewest trustees a setup goes on with once cheating trustees are convicted and left
    /// out (at least 1: anytrust needs one honest trustee).
    #[arg(long, value_name = "N", default_value_t = 1)]
    min_trustees: u16,
    /// The anonymity minimum: buddy groups of at least K clients.
    #[arg(long, value_name = "K")]
    min_anonymity: Option<u16>,
    /// Base cell length in bytes, 16-65535.
    #[arg(long, value_name = "BYTES")]
    cell_length: Option<usize>,
    /// Longest cell a slot owner may ask for.
    #[arg(long, value_name = "BYTES")]
    max_cell_length: Option<usize>,
    /// Seconds of downstream records the relay must keep (default 600).
    #[arg(long, value_name = "S")]
    log_window_secs: Option<u64>,
    /// Bytes of downstream records the relay must keep (default 32 MiB).
    #[arg(long, value_name = "B")]
    log_window_bytes: Option<u64>,
}

/// `dissent group ...`.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Start a group folder (public files only) for a relay at HOST:PORT.
    New {
        /// The relay's address.
        #[arg(long, value_name = "HOST:PORT")]
        relay: HostPort,
        #[command(flatten)]
        policy: PolicyArgs,
        /// The folder.
        dir: PathBuf,
    },
    /// Add public key files (a relay, trustees, clients): a new, unsigned version.
    Add {
        /// The group folder.
        dir: PathBuf,
        /// Public key files (FILE.pub).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Take a trustee or client out (it leaves at the next epoch): a new, unsigned version.
    Remove {
        /// The group folder.
        dir: PathBuf,
        /// Its key fingerprint (SHA256:...), as `group show` prints it.
        fingerprint: String,
    },
    /// Print every fingerprint, the policy, the version and the group fingerprint.
    Show {
        /// The group folder.
        dir: PathBuf,
    },
    /// Sign this version with a trustee's identity key (every trustee must).
    Sign {
        /// The group folder.
        dir: PathBuf,
        /// The trustee's private key file.
        key_file: PathBuf,
    },
}

/// Runs a `key` command.
pub fn key(cmd: KeyCommand) -> Result<()> {
    match cmd {
        KeyCommand::New { role, name, file } => {
            let public = keys::new_key(&file, role, name.as_deref())?;
            console::say(format_args!(
                "wrote {} key {} ({}) to {} and {}",
                public.role,
                public.name,
                public.fingerprint(),
                file.display(),
                keys::public_path(&file).display()
            ));
            Ok(())
        }
        KeyCommand::Show { file } => {
            let public = match keys::load_public(&file) {
                Ok(p) => p,
                Err(_) => keys::load_private(&file)?.public(),
            };
            println!("{} {} {}", public.fingerprint(), public.role, public.name);
            Ok(())
        }
    }
}

/// Runs a `group` command.
pub fn run(cmd: GroupCommand) -> Result<()> {
    match cmd {
        GroupCommand::New { relay, policy, dir } => {
            let d = GroupPolicy::default();
            let cell_length = policy.cell_length.unwrap_or(d.cell_length);
            let p = GroupPolicy {
                min_clients: policy.min_clients,
                min_anonymity: policy.min_anonymity.unwrap_or(d.min_anonymity),
                cell_length,
                max_cell_length: policy
                    .max_cell_length
                    .unwrap_or(d.max_cell_length.max(cell_length)),
                log_window_secs: policy.log_window_secs.unwrap_or(d.log_window_secs),
                log_window_bytes: policy.log_window_bytes.unwrap_or(d.log_window_bytes),
                min_trustees: policy.min_trustees,
            };
            let desc = group::new_group(&dir, &relay, p)?;
            console::say(format_args!(
                "wrote {} (version {}); add keys with `dissent group add {} FILE.pub...`",
                group::group_file(&dir).display(),
                desc.version,
                dir.display()
            ));
            Ok(())
        }
        GroupCommand::Add { dir, files } => {
            let mut desc = group::load(&dir)?;
            let mut added = Vec::new();
            for f in &files {
                let public = keys::load_public(f)?;
                let line = format!("{} {} {}", public.role, public.name, public.fingerprint());
                desc.add(public)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                added.push(line);
            }
            desc.changed();
            group::save(&dir, &desc)?;
            for line in added {
                console::say(format_args!("added {line}"));
            }
            say_version(&desc);
            Ok(())
        }
        GroupCommand::Remove { dir, fingerprint } => {
            let mut desc = group::load(&dir)?;
            let gone = desc.remove(&fingerprint)?;
            group::save(&dir, &desc)?;
            console::say(format_args!(
                "took out {} {} ({fingerprint}); it leaves at the next epoch",
                gone.role, gone.name
            ));
            say_version(&desc);
            Ok(())
        }
        GroupCommand::Show { dir } => {
            print!("{}", group::show(&group::load(&dir)?));
            Ok(())
        }
        GroupCommand::Sign { dir, key_file } => {
            let mut desc = group::load(&dir)?;
            let private = keys::load_private(&key_file)?;
            if private.role != KeyRole::Trustee {
                bail!(
                    "{} is a {} key: only trustees sign a group",
                    key_file.display(),
                    private.role
                );
            }
            let name = desc.sign(
                &IdentityKey::from_bytes(&private.identity),
                &private.public(),
            )?;
            group::save(&dir, &desc)?;
            console::say(format_args!(
                "trustee {name} signed version {} ({})",
                desc.version,
                desc.fingerprint()
            ));
            let left = desc.problems();
            if !left.is_empty() {
                console::say(format_args!("still needed: {}", left.join("; ")));
            }
            Ok(())
        }
    }
}

fn say_version(desc: &group::GroupDesc) {
    console::say(format_args!(
        "group version {} ({}): every trustee must sign it (`dissent group sign`)",
        desc.version,
        desc.fingerprint()
    ));
}
