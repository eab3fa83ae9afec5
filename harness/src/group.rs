//! A local DC-net of `dissent` processes: the command line of each node.
//!
//! A group is a configuration folder (`dissent config generate`) and one process per node:
//! the relay, each trustee, each client with a local port, and load processes
//! (`dissent clients`) for clients without one. Every node that listens does so on port 0
//! and names the port it got in its log ([`super::ports`]); the other nodes are told the
//! relay's with `--relay`, so the relay address written into the configuration is never
//! used (a reserved port, [`super::ports::reserve_port`]).
//!
//! The tests (`tests/support`) and `dissent bench` start their groups from these command
//! lines; each owns its processes its own way (the tests capture their output and kill
//! them when a test ends, the benchmark logs to files and stops them in tiers).

use std::path::{Path, PathBuf};

/// The nodes of a group whose configuration is in a folder.
#[derive(Clone, Debug)]
pub struct Group {
    cfg: PathBuf,
}

impl Group {
    /// The group configured in `cfg`.
    pub fn new(cfg: impl Into<PathBuf>) -> Group {
        Group { cfg: cfg.into() }
    }

    /// The configuration folder.
    pub fn cfg(&self) -> &Path {
        &self.cfg
    }

    /// The private file of node `id` (`client-3`, `trustee-0`, `relay`).
    pub fn key_file(&self, id: &str) -> PathBuf {
        self.cfg.join(format!("{id}.json"))
    }

    /// `dissent relay`, listening on port 0 (unless `extra` gives `-p`) with a metrics
    /// endpoint on port 0, with `extra` options.
    pub fn relay(&self, extra: &[String]) -> Vec<String> {
        let mut argv = args(&["relay", "--metrics", "127.0.0.1:0"]);
        if !extra.iter().any(|a| a == "-p" || a == "--port") {
            argv.extend(args(&["-p", "0"]));
        }
        argv.extend_from_slice(extra);
        argv.push(self.cfg_arg());
        argv
    }

    /// `dissent trustee` number `j`, dialing the relay at 127.0.0.1:`relay_port`.
    pub fn trustee(&self, relay_port: u16, j: usize, extra: &[String]) -> Vec<String> {
        let mut argv = args(&["trustee", "--relay", &relay(relay_port)]);
        argv.extend_from_slice(extra);
        argv.push(self.cfg_arg());
        argv.push(self.key_arg(&format!("trustee-{j}")));
        argv
    }

    /// `dissent client` number `i` on local port `port` (0: a port the system picks, named
    /// in its log), dialing the relay at 127.0.0.1:`relay_port`.
    pub fn client(&self, relay_port: u16, i: usize, port: u16, extra: &[String]) -> Vec<String> {
        let port = port.to_string();
        let mut argv = args(&["client", "-p", &port, "--relay", &relay(relay_port)]);
        argv.extend_from_slice(extra);
        argv.push(self.cfg_arg());
        argv.push(self.key_arg(&format!("client-{i}")));
        argv
    }

    /// `dissent clients` for clients `from..to` in one process, without local ports.
    pub fn clients(
        &self,
        relay_port: u16,
        from: usize,
        to: usize,
        extra: &[String],
    ) -> Vec<String> {
        let (from, to) = (from.to_string(), to.to_string());
        let mut argv = args(&["clients", "--from", &from, "--to", &to]);
        argv.extend(args(&["--relay", &relay(relay_port)]));
        argv.extend_from_slice(extra);
        argv.push(self.cfg_arg());
        argv
    }

    fn cfg_arg(&self) -> String {
        self.cfg.display().to_string()
    }

    fn key_arg(&self, id: &str) -> String {
        self.key_file(id).display().to_string()
    }
}

/// 127.0.0.1:`port`, as `--relay` takes it.
pub fn relay(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Owned arguments.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_listens_on_port_0_and_is_told_the_relay() {
        let g = Group::new("/c");
        assert_eq!(
            g.relay(&args(&["--exit", "echo"])),
            args(&[
                "relay",
                "--metrics",
                "127.0.0.1:0",
                "-p",
                "0",
                "--exit",
                "echo",
                "/c"
            ])
        );
        assert_eq!(
            g.relay(&args(&["-p", "7000"])),
            args(&["relay", "--metrics", "127.0.0.1:0", "-p", "7000", "/c"])
        );
        assert_eq!(
            g.trustee(4000, 1, &[]),
            args(&[
                "trustee",
                "--relay",
                "127.0.0.1:4000",
                "/c",
                "/c/trustee-1.json"
            ])
        );
        assert_eq!(
            g.client(4000, 2, 0, &args(&["--min-clients", "3"])),
            args(&[
                "client",
                "-p",
                "0",
                "--relay",
                "127.0.0.1:4000",
                "--min-clients",
                "3",
                "/c",
                "/c/client-2.json"
            ])
        );
        assert_eq!(
            g.clients(4000, 1, 5, &[]),
            args(&[
                "clients",
                "--from",
                "1",
                "--to",
                "5",
                "--relay",
                "127.0.0.1:4000",
                "/c"
            ])
        );
    }
}
