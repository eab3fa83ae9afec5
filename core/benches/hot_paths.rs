//! Micro-benchmarks of the hot paths every exchange runs: pad generation, XOR of cells, the
//! frame codec, and an owned cell's sealing (owner) and check (relay). `cargo bench -p
//! dissent-core`.

// Benchmark code: each `expect` and index is on a fixture the benchmark built itself.
#![allow(clippy::indexing_slicing, clippy::expect_used, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dissent_core::crypto::{xor_into, IntervalKey, PadEngine, PairKey, SerialPads, PAD_NONCE_LEN};
use dissent_core::wire::{self, CellView, CellWriter, ConnId, Down, Kind, Message};

fn key(i: u8) -> IntervalKey {
    PairKey::from_shared(&[i; 32], &[1; 16], &[2; 16], &[3; 32], &[4; 32])
        .interval_key(7, &[5; 16], &[6; 16])
}

fn pads(c: &mut Criterion) {
    let mut g = c.benchmark_group("pad");
    for len in [256usize, 1024, 32 * 1024] {
        let k = key(1);
        let mut buf = vec![0u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("one_pair", len), &len, |b, _| {
            b.iter(|| k.apply_pad(&[9; PAD_NONCE_LEN], &mut buf))
        });
    }
    // A trustee's cell: the pads of many clients XORed together.
    for clients in [16usize, 256] {
        let keys: Vec<IntervalKey> = (0..clients).map(|i| key(i as u8)).collect();
        let mut buf = vec![0u8; 256];
        g.throughput(Throughput::Bytes((clients * 256) as u64));
        g.bench_with_input(
            BenchmarkId::new("trustee_cell_256", clients),
            &clients,
            |b, _| b.iter(|| SerialPads.xor_pads(&keys, &[9; PAD_NONCE_LEN], &mut buf)),
        );
    }
    g.finish();
}

fn xor(c: &mut Criterion) {
    let mut g = c.benchmark_group("xor");
    for len in [256usize, 32 * 1024] {
        let src = vec![0x5au8; len];
        let mut dst = vec![0xa5u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("xor_into", len), &len, |b, _| {
            b.iter(|| xor_into(&mut dst, &src))
        });
    }
    g.finish();
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let data = vec![0x42u8; 1024];
    let outputs = [0u8, 0, 0];
    let msg = Message::ClientRequest(wire::ClientRequest {
        interval: 1_700_000_000,
        exchange: 123_456,
        kind: Kind::Slot { slot: 7, len: 256 },
        outputs: &outputs,
        down: Down::Data {
            conn: ConnId::new(7, 99),
            data: &data,
        },
    });
    let mut out = vec![0u8; 4096];
    let n = msg.emit_frame(&mut out).expect("fits");
    g.bench_function("emit_client_request_1k", |b| {
        b.iter(|| msg.emit_frame(&mut out).expect("fits"))
    });
    let frame = out[wire::FRAME_HEADER_LEN..n].to_vec();
    g.bench_function("parse_client_request_1k", |b| {
        b.iter(|| Message::parse(&frame).expect("valid"))
    });
    let mut cell = vec![0u8; 1024];
    let mut w = CellWriter::new(&mut cell);
    for k in 0..8u32 {
        w.push_data(ConnId::new(7, k as u16 + 1), false, &[k as u8; 100])
            .expect("fits");
    }
    w.finish(1024);
    g.bench_function("parse_cell_8_records", |b| {
        b.iter(|| {
            let v = CellView::parse(&cell).expect("valid");
            v.records().count()
        })
    });
    g.bench_function("cell_prefix", |b| {
        let prefix = wire::Prefix::Cell {
            interval: 1_700_000_000,
            exchange: 123_456,
        };
        b.iter(|| prefix.emit(256, &mut out).expect("fits"))
    });
    g.finish();
}

/// An owner seals one cell per owned exchange (outside the cell path); the relay checks one
/// per data exchange (XChaCha20-Poly1305 under the slot's key), and derives each slot's key
/// once (one Ristretto255 DH and HKDF).
fn owned_cells(c: &mut Criterion) {
    use dissent_core::crypto::{pad_public_key, pad_secret};
    let relay = pad_secret(&[11; 32]).expect("relay secret");
    let pseudonym_public = pad_public_key(&[9; 32]);
    let key = wire::SlotKey::owner(&[9; 32], &pad_public_key(&[11; 32]), &[1; 16], &[2; 16], 2)
        .expect("slot key");
    let ctx = wire::SlotContext {
        group_id: [1; 16],
        session_id: [2; 16],
        view: [3; 32],
        interval: 7,
        slot: 2,
        ordinal: 5,
    };
    let mut g = c.benchmark_group("owned_cell");
    g.bench_function("derive_key", |b| {
        b.iter(|| wire::SlotKey::relay(&relay, &pseudonym_public, &[1; 16], &[2; 16], 2))
    });
    for len in [1024usize, 32 * 1024] {
        let mut cell = vec![0u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("seal", len), &len, |b, _| {
            b.iter(|| wire::seal(&mut cell, &ctx, &[0x5A; 24], &key))
        });
        let mut sealed = vec![0u8; len];
        wire::seal(&mut sealed, &ctx, &[0x5A; 24], &key);
        g.bench_with_input(BenchmarkId::new("open", len), &len, |b, _| {
            b.iter(|| {
                // `open` decrypts in place: check a fresh copy each time.
                cell.copy_from_slice(&sealed);
                wire::open(&mut cell, &ctx, &key)
            })
        });
    }
    // Trap bytes: the owner's layout of a prepared cell in the cell path (a non-owner's
    // zeros with the same work), the relay's check of a decoded cell (trap bytes, gather,
    // open), and a slot's trap key (one Ristretto255 DH and HKDF, once per interval).
    let trap_public = pad_public_key(&[12; 32]);
    let traps =
        wire::TrapKey::owner(&[9; 32], &trap_public, &[1; 16], &[2; 16], 7, 2).expect("trap key");
    g.bench_function("trap_key", |b| {
        b.iter(|| wire::TrapKey::owner(&[9; 32], &trap_public, &[1; 16], &[2; 16], 7, 2))
    });
    for len in [1024usize, 32 * 1024] {
        let n = wire::sealed_len(len);
        let mut sealed = vec![0u8; n];
        wire::seal(&mut sealed, &ctx, &[0x5A; 24], &key);
        let mut cell = vec![0u8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("lay_out", len), &len, |b, _| {
            b.iter(|| wire::lay_out(&mut cell, Some(&sealed), &traps, 300))
        });
        g.bench_with_input(BenchmarkId::new("lay_out_zeros", len), &len, |b, _| {
            b.iter(|| wire::lay_out(&mut cell, None, &traps, 300))
        });
        let mut laid = vec![0u8; len];
        wire::lay_out(&mut laid, Some(&sealed), &traps, 300);
        g.bench_with_input(BenchmarkId::new("check", len), &len, |b, _| {
            b.iter(|| {
                cell.copy_from_slice(&laid);
                let sprung = wire::sprung(&cell, &traps, 300);
                let n = wire::gather_clean(&mut cell, &traps, 300);
                (sprung, wire::open(&mut cell[..n], &ctx, &key))
            })
        });
    }
    g.finish();
}

/// The relay's blame commitments: one fingerprint per member's cell, next to the XOR it
/// already does for that cell.
fn fingerprints(c: &mut Criterion) {
    use dissent_core::blame::commit::ExchangeKey;
    let mut g = c.benchmark_group("fingerprint");
    for len in [256usize, 1024, 32 * 1024] {
        let cell = vec![0x5au8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("cell", len), &len, |b, _| {
            let k = ExchangeKey::new(&[7; 32], 1, 2);
            b.iter(|| k.fingerprint(&cell))
        });
    }
    g.bench_function("exchange_key", |b| {
        b.iter(|| ExchangeKey::new(&[7; 32], 1, 2))
    });
    // What the relay spends per exchange at 16 clients and 3 trustees, 1 KiB cells: one
    // key and 19 fingerprints (the round's pad nonce, one SHA-256 per exchange, beside it).
    let cells = vec![vec![0x5au8; 1024]; 19];
    g.throughput(Throughput::Bytes(19 * 1024));
    g.bench_function("exchange_16_clients_1k", |b| {
        b.iter(|| {
            let k = ExchangeKey::new(&[7; 32], 1, 2);
            cells.iter().fold(0u8, |x, c| x ^ k.fingerprint(c)[0])
        })
    });
    g.bench_function("transcript_step", |b| {
        let mut t = dissent_core::transcript::Transcript::start(b"interval start");
        let outputs = [0u8; 24];
        let head = [3u8; 32];
        let mut e = 0u64;
        b.iter(|| {
            e += 1;
            t.advance(e, dissent_core::wire::Kind::Reserve, &outputs, &head);
            t.pad_nonce()
        })
    });
    g.finish();
}

criterion_group!(benches, pads, xor, codec, owned_cells, fingerprints);
criterion_main!(benches);
