//! netcheck: proves a board's network, time and entropy work, then exits with a status.
//!
//! With its configuration from the provisioning blob (app `NCHK`), it
//! 1. listens on `listen_port` and echoes back everything the first connection sends until
//!    that peer closes (under QEMU the host reaches it through a `hostfwd` port), and at
//!    the same time
//! 2. connects to the echo server at `echo_addr:echo_port`, streams `echo_bytes` bytes of a
//!    pattern keyed by the board's entropy, and checks every byte that comes back.
//!
//! It prints its progress and the stack peak, then exits 0 when both succeed, 1 on any
//! failure and 2 if they take longer than a minute.
#![no_std]
#![no_main]

use core::fmt;

use dissent_embedded::provision::{Blob, BlobError};
use dissent_embedded::{println, stack, Board};
use embassy_futures::join::join;
use embassy_futures::select::{select, Either};
use embassy_net::tcp::{AcceptError, ConnectError, Error as TcpError, TcpSocket};
use embassy_net::Ipv4Address;
use embassy_time::{Duration, Instant, Timer};
use embedded_io_async::Write;
use rand_core::RngCore;
use serde::Deserialize;
use static_cell::ConstStaticCell;

/// The app tag in the provisioning blob.
const APP: [u8; 4] = *b"NCHK";
/// The whole check must finish within this time.
const DEADLINE: Duration = Duration::from_secs(60);
/// Each socket's receive and transmit buffer.
const SOCKET_BUF: usize = 4096;
/// Bytes moved per read or write call.
const CHUNK: usize = 512;

/// netcheck's configuration: 12 bytes, fixed little-endian fields.
#[derive(Debug, Deserialize)]
struct Config {
    /// IPv4 address of the echo server (10.0.2.2, the host, under QEMU).
    echo_addr: [u8; 4],
    #[serde(with = "postcard::fixint::le")]
    echo_port: u16,
    /// Port to accept one connection on and echo it.
    #[serde(with = "postcard::fixint::le")]
    listen_port: u16,
    /// Bytes to stream through the echo server.
    #[serde(with = "postcard::fixint::le")]
    echo_bytes: u32,
}

/// What went wrong.
#[derive(Debug)]
enum Failure {
    Provisioning(BlobError),
    Connect(ConnectError),
    Accept(AcceptError),
    Io(&'static str, TcpError),
    /// The echo server closed before returning every byte.
    ClosedEarly {
        received: usize,
    },
    /// A returned byte differs from the one sent.
    Mismatch {
        offset: usize,
        sent: u8,
        got: u8,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provisioning(e) => write!(f, "{e}"),
            Self::Connect(e) => write!(f, "connect to echo server: {e:?}"),
            Self::Accept(e) => write!(f, "accept on listen port: {e:?}"),
            Self::Io(what, e) => write!(f, "{what}: {e:?}"),
            Self::ClosedEarly { received } => {
                write!(f, "echo server closed after {received} bytes")
            }
            Self::Mismatch { offset, sent, got } => {
                write!(f, "echoed byte {offset} is {got:#04x}, sent {sent:#04x}")
            }
        }
    }
}

#[cortex_m_rt::entry]
fn main() -> ! {
    dissent_embedded::run(|spawner, board| {
        // The pool holds this one task, spawned once.
        spawner.spawn(netcheck(board).unwrap());
    })
}

#[embassy_executor::task]
async fn netcheck(mut board: Board) {
    let started = Instant::now();
    let status = match select(check(&mut board), Timer::after(DEADLINE)).await {
        Either::First(Ok((outbound, inbound))) => {
            println!(
                "netcheck: ok: {} bytes through the echo server, {} bytes echoed for the host, {} ms",
                outbound,
                inbound,
                started.elapsed().as_millis()
            );
            0
        }
        Either::First(Err(failure)) => {
            println!("netcheck: FAILED: {}", failure);
            1
        }
        Either::Second(()) => {
            println!("netcheck: FAILED: not done after {} s", DEADLINE.as_secs());
            2
        }
    };
    println!(
        "netcheck: stack peak {} bytes (of {} reserved)",
        stack::peak(),
        stack::size()
    );
    dissent_embedded::exit(status)
}

/// Runs both exchanges; returns the bytes moved by each.
async fn check(board: &mut Board) -> Result<(usize, usize), Failure> {
    let config: Config = Blob::parse(board.provisioning)
        .and_then(|blob| blob.decode(APP))
        .map_err(Failure::Provisioning)?;
    println!(
        "netcheck: on {}: echo server {}:{}, {} bytes; listening on {}",
        board.name,
        Ipv4Address::from(config.echo_addr),
        config.echo_port,
        config.echo_bytes,
        config.listen_port
    );
    board.net.wait_link_up().await;
    board.net.wait_config_up().await;

    // Zeroed in place in .bss: never built on the stack.
    static BUFFERS: ConstStaticCell<[[u8; SOCKET_BUF]; 4]> =
        ConstStaticCell::new([[0; SOCKET_BUF]; 4]);
    let [rx_a, tx_a, rx_b, tx_b] = BUFFERS.take();
    let listener = TcpSocket::new(board.net, rx_a, tx_a);
    let client = TcpSocket::new(board.net, rx_b, tx_b);
    let key = RngCore::next_u64(&mut board.rng);
    // `join` polls the listener first, so it listens before the echo server sees us.
    let (inbound, outbound) = join(
        serve_one(listener, config.listen_port),
        stream_through_echo(client, &config, key),
    )
    .await;
    Ok((outbound?, inbound?))
}

/// Accepts one connection on `port` and echoes it until the peer closes.
async fn serve_one(mut socket: TcpSocket<'_>, port: u16) -> Result<usize, Failure> {
    socket.set_timeout(Some(Duration::from_secs(20)));
    socket.accept(port).await.map_err(Failure::Accept)?;
    let mut buf = [0u8; CHUNK];
    let mut total = 0;
    loop {
        let n = socket
            .read(&mut buf)
            .await
            .map_err(|e| Failure::Io("read from host", e))?;
        if n == 0 {
            break;
        }
        socket
            .write_all(&buf[..n])
            .await
            .map_err(|e| Failure::Io("echo to host", e))?;
        total += n;
    }
    socket.close();
    socket
        .flush()
        .await
        .map_err(|e| Failure::Io("close towards host", e))?;
    Ok(total)
}

/// Streams the keyed pattern through the echo server while checking what comes back.
async fn stream_through_echo(
    mut socket: TcpSocket<'_>,
    config: &Config,
    key: u64,
) -> Result<usize, Failure> {
    let total = config.echo_bytes as usize;
    socket.set_timeout(Some(Duration::from_secs(20)));
    socket
        .connect((Ipv4Address::from(config.echo_addr), config.echo_port))
        .await
        .map_err(Failure::Connect)?;
    let (mut reader, mut writer) = socket.split();
    let send = async {
        let mut chunk = [0u8; CHUNK];
        let mut sent = 0;
        while sent < total {
            let n = CHUNK.min(total - sent);
            for (i, byte) in chunk[..n].iter_mut().enumerate() {
                *byte = pattern(key, sent + i);
            }
            writer
                .write_all(&chunk[..n])
                .await
                .map_err(|e| Failure::Io("write to echo server", e))?;
            sent += n;
        }
        writer
            .flush()
            .await
            .map_err(|e| Failure::Io("flush to echo server", e))
    };
    let receive = async {
        let mut buf = [0u8; CHUNK];
        let mut received = 0;
        while received < total {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| Failure::Io("read from echo server", e))?;
            if n == 0 {
                return Err(Failure::ClosedEarly { received });
            }
            for (i, &got) in buf[..n].iter().enumerate() {
                let sent = pattern(key, received + i);
                if got != sent {
                    return Err(Failure::Mismatch {
                        offset: received + i,
                        sent,
                        got,
                    });
                }
            }
            received += n;
        }
        Ok(received)
    };
    let (sent, received) = join(send, receive).await;
    sent?;
    let received = received?;
    socket.close();
    socket
        .flush()
        .await
        .map_err(|e| Failure::Io("close towards echo server", e))?;
    Ok(received)
}

/// Byte `offset` of the test stream keyed by `key` (SplitMix64 over 8-byte blocks): cheap,
/// reproducible, and different every boot. Test data only, not cryptography.
fn pattern(key: u64, offset: usize) -> u8 {
    let mut z = key.wrapping_add((offset as u64 / 8 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z.to_le_bytes()[offset % 8]
}
