//! Byte-exact vectors of the setup messages (docs/protocol.md, "Epoch setup"), and their
//! independent check.
//!
//! `docs/vectors/setup-vectors.txt` pins one message of each kind, made by the roles from
//! fixed identity keys and fixed seeds; `docs/vectors/setup.py` (pure Python, with
//! shuffle.py's Ristretto255 and merlin and its own Ed25519 verifier from RFC 8032) parses
//! them, checks every signature and proof of knowledge, and refuses tampered copies. To
//! rewrite the file after a deliberate change:
//! `DISSENT_WRITE_VECTORS=1 cargo test -p dissent-core --test epoch_vectors`.
// Test code: its indexing and unwraps are on fixtures it made itself.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use dissent_core::epoch::identity::Ed25519Identity;
use dissent_core::epoch::message::{
    sign_in_place, signature_holds, Chunk, Open, Record, Seal, SetupMessage, Stage, MAX_CHUNK_DATA,
};
use dissent_core::epoch::{Event, SetupClient, SetupConfig, SetupStorage, SetupTrustee};
use dissent_core::ristretto::shuffle::ProverSlot;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const PINNED: &str = include_str!("../../docs/vectors/setup-vectors.txt");
const GROUP: [u8; 32] = [0x47; 32];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn vectors() -> String {
    let mut out = String::new();
    let mut line = |name: &str, bytes: &[u8]| {
        let _ = writeln!(out, "{name} {}", hex(bytes));
    };
    let trustee_ids = [
        Ed25519Identity::from_seed(&[0x11; 32]),
        Ed25519Identity::from_seed(&[0x12; 32]),
    ];
    let client_ids = [
        Ed25519Identity::from_seed(&[0x21; 32]),
        Ed25519Identity::from_seed(&[0x22; 32]),
        Ed25519Identity::from_seed(&[0x23; 32]),
    ];
    let trustees = trustee_ids.each_ref().map(|i| i.public());
    let clients = client_ids.each_ref().map(|i| i.public());
    line("group", &GROUP);
    line("trustee0_identity", &trustees[0]);
    line("trustee1_identity", &trustees[1]);
    line("client0_identity", &clients[0]);
    let config = SetupConfig {
        group: GROUP,
        epoch: 7,
        trustees: &trustees,
        clients: &clients,
        min_trustees: 2,
        chunk_len: 1024,
    };

    // Open: epoch 7, attempt 0, both trustees, clients 0 and 2 of 3.
    let mut buf = [0u8; 256];
    let participants = [0b101u8];
    let open = SetupMessage::Open(Open {
        epoch: 7,
        attempt: 0,
        group: GROUP,
        trustees: 0b11,
        clients: 3,
        participants: &participants,
    });
    let len = open.encode(&mut buf).unwrap();
    let open = buf[..len].to_vec();
    line("open", &open);

    // Keys of trustees 0 and 1 (seeds 1 and 2), client 0's submission (seed 3): made by
    // the roles, checked by a client following them.
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for (j, id) in trustee_ids.into_iter().enumerate() {
        let mut t = SetupTrustee::new(
            config,
            j as u8,
            id,
            SetupStorage::with_vecs(&config),
            vec![ProverSlot::EMPTY; 3],
        )
        .unwrap();
        let mut rng = ChaCha20Rng::from_seed([j as u8 + 1; 32]);
        t.receive(&open, &mut rng).unwrap();
        for k in &keys {
            t.receive(k, &mut rng).unwrap();
        }
        let len = t.poll_transmit(&mut buf).unwrap().unwrap();
        keys.push(buf[..len].to_vec());
    }
    line("key0", &keys[0]);
    line("key1", &keys[1]);
    let [client0, ..] = client_ids;
    let mut c = SetupClient::new(config, 0, client0, SetupStorage::with_vecs(&config)).unwrap();
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    c.receive(&open, &mut rng).unwrap();
    c.receive(&keys[0], &mut rng).unwrap();
    assert_eq!(c.receive(&keys[1], &mut rng), Ok(Event::KeysComplete));
    let submit = c.poll_transmit().unwrap().to_vec();
    line("submit0", &submit);
    line(
        "pseudonym0",
        &c.pseudonym().unwrap().public_key().to_bytes(),
    );
    assert!(signature_holds(&submit, &GROUP, &clients[0]));
    assert!(c.receive(&submit, &mut rng).is_ok());

    // A chunk, a seal and a record of trustee 1 (fields fixed; signatures are Ed25519's,
    // deterministic).
    let signer = Ed25519Identity::from_seed(&[0x12; 32]);
    let data = [0xd0, 0xd1, 0xd2, 0xd3];
    let len = SetupMessage::Chunk(Chunk {
        epoch: 7,
        attempt: 0,
        trustee: 1,
        stage: Stage::Shuffle,
        offset: 4096,
        data: &data,
    })
    .encode(&mut buf)
    .unwrap();
    line("chunk", &buf[..len]);
    let len = SetupMessage::Seal(Seal {
        epoch: 7,
        attempt: 0,
        trustee: 1,
        stage: Stage::Shares,
        digest: [0xdd; 32],
        signature: [0; 64],
    })
    .encode(&mut buf)
    .unwrap();
    assert!(sign_in_place(&mut buf[..len], &GROUP, &signer));
    line("seal", &buf[..len]);
    let len = SetupMessage::Record(Record {
        epoch: 7,
        attempt: 0,
        trustee: 1,
        transcript: [0xee; 32],
        list: [0x11; 32],
        signature: [0; 64],
    })
    .encode(&mut buf)
    .unwrap();
    assert!(sign_in_place(&mut buf[..len], &GROUP, &signer));
    line("record", &buf[..len]);
    out
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/setup-vectors.txt")
}

#[test]
fn setup_messages_match_the_pinned_vectors_and_parse_back() {
    let made = vectors();
    if std::env::var_os("DISSENT_WRITE_VECTORS").is_some() {
        std::fs::write(vectors_path(), &made).unwrap();
        return;
    }
    assert_eq!(made, PINNED, "the setup vectors changed");
    for line in PINNED.lines() {
        let (name, hex) = line.split_once(' ').unwrap();
        if !matches!(
            name,
            "open" | "key0" | "key1" | "submit0" | "chunk" | "seal" | "record"
        ) {
            continue;
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let message = SetupMessage::parse(&bytes).unwrap();
        let mut again = vec![0u8; bytes.len()];
        assert_eq!(message.encode(&mut again).unwrap(), bytes.len());
        assert_eq!(again, bytes, "{name} round-trips");
        // Every prefix and every longer frame is refused.
        for cut in 0..bytes.len() {
            assert!(
                SetupMessage::parse(&bytes[..cut]).is_err(),
                "{name} cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SetupMessage::parse(&longer).is_err());
    }
}

#[test]
fn an_independent_implementation_checks_the_vectors() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/setup.py");
    let run = |file: &std::path::Path| {
        Command::new("python3")
            .arg(&script)
            .arg(file)
            .output()
            .expect("python3 runs")
    };
    let ok = run(&vectors_path());
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    // One changed digit in a signed message or a proof is refused.
    for (name, at) in [
        ("key0", 30),
        ("submit0", 100),
        ("submit0", 200),
        ("seal", 50),
        ("record", 40),
    ] {
        let tampered: String = PINNED
            .lines()
            .map(|l| {
                let (n, hex) = l.split_once(' ').unwrap();
                if n == name {
                    let mut h: Vec<char> = hex.chars().collect();
                    h[at] = if h[at] == '0' { '1' } else { '0' };
                    format!("{n} {}\n", h.into_iter().collect::<String>())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let path = std::env::temp_dir().join(format!(
            "setup-vectors-{}-{name}-{at}.txt",
            std::process::id()
        ));
        std::fs::write(&path, tampered).unwrap();
        let out = run(&path);
        std::fs::remove_file(&path).unwrap();
        assert!(!out.status.success(), "{name} at {at} accepted");
    }
}

#[test]
fn a_full_chunk_is_one_device_frame_and_a_longer_one_is_refused() {
    let data = vec![0xc5; MAX_CHUNK_DATA];
    let mut buf = vec![0u8; 8192];
    let len = SetupMessage::Chunk(Chunk {
        epoch: 7,
        attempt: 0,
        trustee: 1,
        stage: Stage::Shuffle,
        offset: 0,
        data: &data,
    })
    .encode(&mut buf)
    .unwrap();
    // docs/protocol.md, "Messages": 18 header bytes, then 4,078 data bytes.
    assert_eq!(len, 4096);
    assert_eq!(
        hex(&buf[..18]),
        "04000000000000000700010100000000".to_owned() + "0fee"
    );
    assert!(SetupMessage::parse(&buf[..len]).is_ok());
    // One byte more, its length field saying so: refused.
    buf[16..18].copy_from_slice(&4079u16.to_be_bytes());
    buf[len] = 0xc5;
    assert!(SetupMessage::parse(&buf[..len + 1]).is_err());
    let too_long = vec![0xc5; MAX_CHUNK_DATA + 1];
    let refused = SetupMessage::Chunk(Chunk {
        epoch: 7,
        attempt: 0,
        trustee: 1,
        stage: Stage::Shuffle,
        offset: 0,
        data: &too_long,
    })
    .encode(&mut buf);
    assert!(refused.is_err());
}
