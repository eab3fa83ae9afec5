//! Arbitrary frame bodies fed to a relay, a trustee and a client of a running net: errors,
//! never panics.
//!
//! Each input builds the core's in-memory test network (3 clients, 2 trustees) and runs it
//! to its first interval, so the frames meet roles in the middle of an exchange. The input
//! is a sequence of `selector(1) | len(1) | body` chunks: the selector picks the role (and,
//! for the relay, the link the body arrives on).
#![no_main]

use dissent_core::client::NoUpstream;
use dissent_core::testkit::{Net, NetConfig, Node};
use dissent_core::wire::{CellView, OutputsView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut net = Net::new(NetConfig::new(3, 2, 64));
    net.run_until(100_000, |s| s.relay.interval().is_some());
    let now = net.now;
    let mut out = vec![0u8; 70_000];
    let links: Vec<_> = [
        Node::Client(0),
        Node::Client(1),
        Node::Client(2),
        Node::Trustee(0),
        Node::Trustee(1),
    ]
    .iter()
    .filter_map(|&n| net.link_of(n).map(|l| (n, l)))
    .collect();
    let mut rest = data;
    while let [selector, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(n);
        rest = next;
        match selector % 3 {
            0 => {
                let (node, link) = links[usize::from(selector / 3) % links.len()];
                let _ = net.relay.handle_frame(now, link, node.peer(), body);
                while net.relay.poll_event(now).is_some() {}
                while let Ok(Some(_)) = net.relay.poll_transmit(now, &mut out, &mut net.exit) {}
            }
            1 => {
                let _ = net.trustees[0].handle_frame(now, body);
                while let Ok(Some(_)) = net.trustees[0].poll_transmit(&mut out) {}
            }
            _ => {
                let _ = net.clients[0].handle_frame(now, body, &mut out);
                while net.clients[0].poll_event().is_some() {}
                while let Ok(Some(_)) = net.clients[0].poll_transmit(&mut out) {}
                net.clients[0].prepare(now, &mut NoUpstream);
            }
        }
        let _ = CellView::parse(body);
        let _ = OutputsView::parse(body, 3);
    }
});
