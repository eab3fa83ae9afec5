//! The answering side answers while the local side is stuck.

// Test code only: each unwrap() is an assertion on a fixture.
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::*;
use crate::config::{self, GenerateOptions, NodeKind};
use crate::exit::{ExitKind, ExitPolicy};
use crate::relay::{self, RelayOptions};

/// Generous bound on every wait, only so a broken client fails instead of hanging.
const GUARD: Duration = Duration::from_secs(60);
/// Exchange counts (relay decodes plus cells sent, process-wide) that no client can reach
/// alone: without client 0's cells nothing is decoded, and the others stop a window ahead.
const PROGRESS: u64 = 600;

/// The process's count of exchanges decoded and cells sent.
fn exchanges() -> u64 {
    crate::metrics::render()
        .lines()
        .find_map(|l| {
            let v = l.strip_prefix("dissent_exchanges_total ")?;
            v.trim().parse::<f64>().ok()
        })
        .map_or(0, |v| v as u64)
}

/// Waits until the exchange count reaches `target`; false if it does not within [`GUARD`].
fn wait_for(target: u64) -> bool {
    let deadline = std::time::Instant::now() + GUARD;
    while std::time::Instant::now() < deadline {
        if exchanges() >= target {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn requests_are_answered_while_a_local_task_holds_the_main_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cfg");
    let relay_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay_listener.local_addr().unwrap().to_string();
    config::generate(
        &cfg,
        &GenerateOptions {
            clients: 2,
            trustees: 1,
            relay: relay_addr.clone(),
            min_anonymity: 2,
            ..GenerateOptions::default()
        },
    )
    .unwrap();
    let group = config::Group::load(&cfg).unwrap();
    let node =
        |id: &str, kind| config::load_node(&group, &cfg.join(format!("{id}.json")), kind).unwrap();
    let (relay_node, trustee, client_0, client_1) = (
        node("relay", NodeKind::Relay),
        node("trustee-0", NodeKind::Trustee),
        node("client-0", NodeKind::Client),
        node("client-1", NodeKind::Client),
    );
    let opts = |quiet| ClientOptions {
        relay: relay_addr.clone(),
        min_clients: 2,
        min_anonymity: 0,
        quiet,
        disrupt: None,
        lie_about_pads: false,
    };

    // The relay, the trustee and client 1 on a runtime of their own.
    let (net_stop, net_stopped) = std::sync::mpsc::channel::<()>();
    let net = {
        let (group, opts_1) = (group.clone(), opts(true));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                relay_listener.set_nonblocking(true).unwrap();
                let listener = TcpListener::from_std(relay_listener).unwrap();
                let relay_opts = RelayOptions {
                    listen: listener.local_addr().unwrap(),
                    exit: ExitKind::Echo,
                    exit_policy: ExitPolicy::new(true, Vec::new()),
                    window: 16,
                    min_clients: 2,
                    idle_gap: Duration::from_millis(1),
                    idle_budget: 1 << 40,
                    exchange_timeout: GUARD,
                    join_delay: Duration::from_millis(0),
                    downstream_len: dissent_core::MAX_DOWNSTREAM,
                    stats_every: 3600,
                    exit_idle: Duration::from_secs(600),
                    exit_per_slot: 16,
                    exit_total: 64,
                    period: 16,
                    status: None,
                    response_times: None,
                    refusals: None,
                    straggler_floor: std::time::Duration::from_millis(500),
                };
                let key = relay_node.private_key;
                let dh = relay_node.session_private_key.expect("the relay's DH key");
                tokio::spawn(relay::serve(listener, group.clone(), key, dh, relay_opts));
                let relay = opts_1.relay.clone();
                tokio::spawn(crate::trustee::run(group.clone(), trustee, relay, 2));
                tokio::spawn(run_many(group, vec![client_1], opts_1));
                tokio::task::spawn_blocking(move || net_stopped.recv())
                    .await
                    .unwrap()
            })
        })
    };

    // Client 0, its local side on a single-threaded runtime, as `dissent client` runs.
    let (client_stop, client_stopped) = oneshot::channel::<()>();
    let (hold_tx, hold_rx) = oneshot::channel::<()>();
    let barrier = Arc::new(Barrier::new(2));
    let held = Arc::new(Barrier::new(2));
    let client = {
        let (barrier, held, opts_0) = (barrier.clone(), held.clone(), opts(false));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                // A local task that, once told, holds the runtime's only thread.
                tokio::spawn(async move {
                    if hold_rx.await.is_ok() {
                        held.wait();
                        barrier.wait();
                    }
                });
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let core = core_client(&group, &client_0, 2, 0).unwrap();
                let stop = async {
                    let _ = client_stopped.await;
                };
                serve(&group, &client_0, core, listener, opts_0, stop).await
            })
        })
    };

    let running = wait_for(PROGRESS);
    let mut answered = false;
    if running {
        hold_tx.send(()).unwrap();
        // The local task holds the main runtime from here until the barrier below.
        held.wait();
        let from = exchanges();
        answered = wait_for(from + PROGRESS);
    }
    // Released in every case, so a failure does not leave the thread stuck.
    if running {
        barrier.wait();
    }
    client_stop.send(()).unwrap();
    let end = client.join().unwrap();
    net_stop.send(()).unwrap();
    net.join().unwrap().unwrap();
    assert!(running, "the DC-net did not start exchanging");
    assert!(
        answered,
        "no exchange completed while a local task held the client's main runtime"
    );
    end.unwrap();
}
