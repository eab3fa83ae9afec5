//! Ports on 127.0.0.1 from the system: bind to 0 and read the port back.
//!
//! A `dissent` process started with port 0 names the address it got in its log;
//! [`port_after`] reads it from there. A port that must be known before its process starts
//! (the relay address a configuration is written with, a port QEMU forwards) is reserved
//! with [`reserve_port`] instead; nothing here binds a port and lets it go for someone else
//! to take.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

/// The log line of a relay that names its address (`relay listening on 127.0.0.1:PORT`).
pub const RELAY_LISTENING: &str = "relay listening on";
/// The log line of a client that names its local port (`client-3 listening on ...`).
pub const CLIENT_LISTENING: &str = "listening on";
/// The log line that names a metrics endpoint's address.
pub const SERVING_METRICS: &str = "serving metrics at";

/// 127.0.0.1:`port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The port of the first `127.0.0.1:PORT` after `marker` in the first line of `text` that
/// holds `marker`.
pub fn port_after(text: &str, marker: &str) -> Option<u16> {
    let line = text.lines().find(|l| l.contains(marker))?;
    let (_, rest) = line.split_once(marker)?;
    let (_, rest) = rest.split_once("127.0.0.1:")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A port on 127.0.0.1 that the system hands to no one else for a minute, for a process
/// that must be told its port before it starts (a relay address written into a
/// configuration before the relay runs, a port QEMU forwards). Whatever can listen on port
/// 0 and name the port it got should do that instead (see [`port_after`]).
///
/// The system picks the port (bind to 0 and read it back). One connection to it is then
/// closed from the listening side first, which leaves that side in TIME_WAIT: for that
/// minute the system gives the port to no `bind` to port 0 and no outgoing connection,
/// while a server that sets SO_REUSEADDR (every listener of `dissent`, tokio's and std's,
/// and QEMU's port forwards) can bind it.
pub fn reserve_port() -> io::Result<u16> {
    time_wait(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?)
}

/// Closes `listener` after one connection to it, closed from its side first: its port is
/// left in TIME_WAIT (see [`reserve_port`]). Returns the port.
pub fn time_wait(listener: TcpListener) -> io::Result<u16> {
    let port = listener.local_addr()?.port();
    let mut client = TcpStream::connect(local(port))?;
    let (server, _) = listener.accept()?;
    drop(server);
    // The server's FIN has come when this read ends; the client closes second.
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    drop(client);
    drop(listener);
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_port_after_the_marker() {
        let log = "x\nINFO relay listening on 127.0.0.1:40123 (3 clients)\n\
                   INFO serving metrics at http://127.0.0.1:40999/metrics\n";
        assert_eq!(port_after(log, RELAY_LISTENING), Some(40123));
        assert_eq!(port_after(log, SERVING_METRICS), Some(40999));
        assert_eq!(port_after(log, CLIENT_LISTENING), Some(40123));
        assert_eq!(port_after(log, "client-0 listening on"), None);
        assert_eq!(
            port_after("relay listening on [::1]:5", RELAY_LISTENING),
            None
        );
    }
}
