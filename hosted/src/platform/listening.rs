//! Whether something listens on a loopback port, seen without connecting where the
//! platform allows it (a connection would reach the listener's application): Linux reads
//! the kernel's `/proc/net/tcp`; elsewhere a connection is made and closed at once.

/// Whether a socket listens on 127.0.0.1:`port` (or on every IPv4 address).
#[cfg(target_os = "linux")]
pub fn on_loopback(port: u16) -> bool {
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| listens_in(&table, port))
}

/// Whether a socket listens on 127.0.0.1:`port`: a connection that is closed at once.
#[cfg(not(target_os = "linux"))]
pub fn on_loopback(port: u16) -> bool {
    use std::net::{Ipv4Addr, SocketAddr, TcpStream};
    use std::time::Duration;
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Whether the `/proc/net/tcp` table `table` has a socket listening on 127.0.0.1:`port`
/// or 0.0.0.0:`port`.
#[cfg(any(target_os = "linux", test))]
fn listens_in(table: &str, port: u16) -> bool {
    const LISTEN: &str = "0A";
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (_, local, _, state) = (fields.next(), fields.next(), fields.next(), fields.next());
        state == Some(LISTEN) && local.is_some_and(|l| wanted.iter().any(|w| w == l))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_listener_is_found_in_the_kernel_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:0438 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
            1: 0100007F:0439 0100007F:8000 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n\
            2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n";
        assert!(listens_in(table, 1080));
        // Connected, not listening.
        assert!(!listens_in(table, 1081));
        assert!(listens_in(table, 8080));
        assert!(!listens_in(table, 80));
    }

    #[test]
    fn a_real_listener_is_seen_and_a_closed_one_is_not() {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(on_loopback(port));
        drop(l);
        assert!(!on_loopback(port));
    }
}
