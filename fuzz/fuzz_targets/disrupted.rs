//! `Disrupted` frames and requests reporting disrupted exchanges, made of arbitrary bytes,
//! fed to a running client of an in-memory net: errors, never panics; a `Disrupted` output
//! is taken only with its frame.
#![no_main]

use dissent_core::testkit::{Net, NetConfig};
use dissent_core::wire::{self, ClientRequest, Down, Kind, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut net = Net::new(NetConfig::new(3, 1, 128));
    net.run_until(100_000, |s| s.relay.interval().is_some());
    let Some((interval, _)) = net.relay.interval() else {
        return;
    };
    let mut out = vec![0u8; 64 * 1024];
    let mut body = vec![0u8; 64 * 1024];
    for chunk in data.chunks(24) {
        let Some((&op, rest)) = chunk.split_first() else {
            continue;
        };
        let exchange = u64::from(rest.first().copied().unwrap_or(0));
        let msg = match op % 3 {
            0 => Message::Disrupted {
                interval: if op & 0x80 == 0 {
                    interval
                } else {
                    interval ^ 1
                },
                exchange,
                cell: rest,
            },
            1 => {
                let digest = wire::disrupted_digest(interval, exchange, rest);
                let mut outputs = [0u8; 1 + wire::DISRUPTED_DIGEST_LEN];
                let n = wire::emit_disrupted_output(&mut outputs, 0, &digest).unwrap_or(0);
                let outputs = outputs.get(..n).unwrap_or(&[]);
                let request = Message::ClientRequest(ClientRequest {
                    interval,
                    exchange: exchange.wrapping_add(1),
                    kind: Kind::Slot {
                        slot: u16::from(op >> 4) % 3,
                        len: 128,
                    },
                    outputs: if op & 0x40 == 0 { outputs } else { rest },
                    down: Down::None,
                });
                let Ok(n) = request.emit_frame(&mut body) else {
                    continue;
                };
                let _ = net.clients[0].handle_frame(
                    net.now,
                    &body[wire::FRAME_HEADER_LEN..n],
                    &mut out,
                );
                continue;
            }
            _ => {
                let _ = net.clients[0].handle_frame(net.now, rest, &mut out);
                continue;
            }
        };
        let Ok(n) = msg.emit_frame(&mut body) else {
            continue;
        };
        let _ = net.clients[0].handle_frame(net.now, &body[wire::FRAME_HEADER_LEN..n], &mut out);
    }
});
