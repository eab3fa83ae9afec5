//! The keys, pads, MACs, transcript, owned-cell and trap vectors (docs/protocol.md, "Test
//! vectors", "Owned cells", "Trap bytes"), checked against their independent recomputation.
//!
//! `docs/vectors/pads.py` (pure Python and the `cryptography` package) prints every value as
//! a `name value` line. This test runs it and compares each line with the value the core
//! computes from the same inputs through its public API; a value that differs, a name it
//! does not know, or a name missing from the output fails it.
//!
//! One value is not public: `mac_key` (`PairKey` keeps it private; the three MACs under it
//! are checked). It is compared with the value pinned in docs/protocol.md instead.
//!
//! A missing python3 fails the test (scripts/setup installs it). A python3 without
//! `cryptography` fails it where `CI` or `DISSENT_REQUIRE_CRYPTOGRAPHY` is set (scripts/test
//! sets the latter; scripts/setup installs the package); elsewhere the test says so and
//! passes.
// Test code: its indexing and unwraps are on fixtures it made itself.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use dissent_core::blame::trap_context;
use dissent_core::crypto::{pad_bit, pad_public_key, pad_secret, PairKey, PAD_NONCE_LEN};
use dissent_core::ristretto::keys::dh;
use dissent_core::transcript::{append, genesis, Transcript};
use dissent_core::wire::{
    body_mut, lay_out, resume_block, seal, trap_secret, CellWriter, ConnId, Down, Kind, Resume,
    SlotContext, SlotKey, TrapKey, SLOT_NONCE_LEN,
};

const PROTOCOL: &str = include_str!("../../docs/protocol.md");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The value docs/protocol.md pins for `name`: its vector line `name <hex>`.
fn pinned(name: &str) -> String {
    PROTOCOL
        .lines()
        .find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [n, v] if n == name && v.bytes().all(|b| b.is_ascii_hexdigit()) => Some(v),
            _ => None,
        })
        .unwrap_or_else(|| panic!("docs/protocol.md pins no {name}"))
        .to_string()
}

/// Every value pads.py prints, by its name there, as the core computes it.
fn vectors() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, value: String| {
        assert!(
            out.insert(name.to_string(), value).is_none(),
            "{name} twice"
        );
    };

    // Keys, pads and MACs (`crypto::tests::derivation_vectors`).
    let (client, trustee) = ([0x11u8; 32], [0x22u8; 32]);
    let (group, session) = ([0x33u8; 16], [0x44u8; 16]);
    let (trustee_nonce, client_nonce) = ([0x55u8; 16], [0x66u8; 16]);
    let (pad_nonce, view) = ([0x77u8; PAD_NONCE_LEN], [0x88u8; 32]);
    let (cpub, tpub) = (pad_public_key(&client), pad_public_key(&trustee));
    let shared = dh(&pad_secret(&client).unwrap(), &tpub).unwrap();
    assert_eq!(shared, dh(&pad_secret(&trustee).unwrap(), &cpub).unwrap());
    let pair = PairKey::agree(&client, &tpub, true, &group, &session).unwrap();
    let interval = pair.interval_key(7, &trustee_nonce, &client_nonce);
    let mut pad = [0u8; 72];
    interval.apply_pad(&pad_nonce, &mut pad);
    let resume = resume_block(
        65536,
        Some(&Resume {
            epoch: [4; 16],
            seq: 77,
            bytes: 1000,
            interval: Some(9),
            lost: false,
        }),
    );
    put("client_pub", hex(&cpub));
    put("trustee_pub", hex(&tpub));
    put("dh", hex(&shared));
    put("pad_key", hex(pair.pad_key_bytes()));
    // Not public: the value docs/protocol.md pins (the MACs below are made with it).
    put("mac_key", pinned("mac_key"));
    put("interval_key", hex(interval.as_bytes()));
    put("pad[0..16]", hex(&pad[..16]));
    put("pad[64..72]", hex(&pad[64..]));
    let bits = [0u32, 13, 521].map(|b| u8::from(pad_bit(&interval, &pad_nonce, b)));
    put("pad_bits.0.13.521", hex(&bits));
    put(
        "presence_proof",
        hex(&pair.presence_proof(&group, &session, 5, &client_nonce, &resume)),
    );
    put("confirmation", hex(&pair.confirmation(&view)));
    put("acknowledgement", hex(&pair.acknowledgement(&view)));

    // Transcript and downstream chain (`transcript::tests::transcript_vectors`).
    let mut t = Transcript::start(&[1, 2, 3]);
    put("t_start", hex(t.hash()));
    let kind = Kind::Slot {
        slot: 0x0203,
        len: 0x0000_0400,
    };
    t.advance(0x0102_0304_0506_0708, kind, &[0, 1, 0], &[0x99; 32]);
    put("t_exchange", hex(t.hash()));
    put("exchange_pad_nonce", hex(&t.pad_nonce()));
    let conn = ConnId(0x0002_0005);
    let mut head = genesis(&[0xAA; 16]);
    let mut chain = |name: &str, head: &dissent_core::wire::Head| {
        put(&format!("{name}.seq"), head.seq.to_string());
        put(&format!("{name}.bytes"), head.bytes.to_string());
        put(&format!("{name}.hash"), hex(&head.hash));
    };
    chain("genesis", &head);
    append(&mut head, &Down::Data { conn, data: b"hi" });
    chain("data", &head);
    append(&mut head, &Down::Close { conn });
    chain("close", &head);
    append(
        &mut head,
        &Down::Grant {
            conn,
            bytes: 0x0004_0000,
        },
    );
    chain("grant", &head);

    // An owned cell (`wire::slot::tests::sealed_cell_vector_and_round_trip`).
    let (pseudonym, relay) = ([9u8; 32], [11u8; 32]);
    let (slot_group, slot_session) = ([1u8; 16], [2u8; 16]);
    let ctx = SlotContext {
        group_id: slot_group,
        session_id: slot_session,
        view: [3; 32],
        interval: 7,
        slot: 2,
        ordinal: 5,
    };
    let relay_public = pad_public_key(&relay);
    let slot_key =
        SlotKey::owner(&pseudonym, &relay_public, &slot_group, &slot_session, 2).unwrap();
    put("pseudonym_pub", hex(&pad_public_key(&pseudonym)));
    put("relay_dh_pub", hex(&relay_public));
    put("slot_key", hex(slot_key.as_bytes()));
    let sealed = |cell: &mut [u8]| {
        let mut w = CellWriter::new(body_mut(cell).unwrap());
        w.push_data(ConnId(0x0003_0001), true, b"hi").unwrap();
        w.finish(300);
        assert!(seal(cell, &ctx, &[0x5A; SLOT_NONCE_LEN], &slot_key));
    };
    let mut cell = [0u8; 128];
    sealed(&mut cell);
    put("owned_cell[24..40]", hex(&cell[24..40]));
    put("owned_cell[112..128]", hex(&cell[112..]));

    // Trap bytes (`wire::slot::tests::trap_vectors_and_layout`).
    let r = trap_secret(&pad_secret(&relay).unwrap(), &[8; 16], &slot_session, 7).unwrap();
    let trap_point = r.public_key().to_bytes();
    let z = dh(&r, &pad_public_key(&pseudonym)).unwrap();
    let trap_key =
        TrapKey::owner(&pseudonym, &trap_point, &slot_group, &slot_session, 7, 2).unwrap();
    assert_eq!(
        TrapKey::from_point(&z, &slot_group, &slot_session, 7, 2),
        trap_key
    );
    put("trap_secret", hex(&r.to_bytes()));
    put("trap_point", hex(&trap_point));
    put("trap_z", hex(&z));
    put("trap_key", hex(trap_key.as_bytes()));
    let traps: Vec<String> = (0..8)
        .map(|k| trap_key.trap_of(300, 128, k).unwrap().to_string())
        .collect();
    assert_eq!(trap_key.trap_of(300, 128, 8), None);
    put("traps(300, 128)", traps.join(","));
    let mut sealed120 = [0u8; 120];
    sealed(&mut sealed120);
    let mut laid = [0xFFu8; 128];
    assert!(lay_out(&mut laid, Some(&sealed120), &trap_key, 300));
    put("laid_out[0..32]", hex(&laid[..32]));
    put("laid_out[96..128]", hex(&laid[96..]));
    put(
        "trap_context",
        hex(&trap_context(&slot_group, &slot_session, 7, 2)),
    );
    out
}

/// Whether python3 can import `cryptography`; if not, fails where the run requires it and
/// otherwise says why the test is skipped.
fn have_cryptography() -> bool {
    let out = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .expect("python3 not found: run scripts/setup (it installs python3)");
    if out.status.success() {
        return true;
    }
    let required = std::env::var_os("DISSENT_REQUIRE_CRYPTOGRAPHY").is_some()
        || std::env::var_os("CI").is_some();
    assert!(
        !required,
        "python3 cannot import cryptography, and this run requires it (CI or \
         DISSENT_REQUIRE_CRYPTOGRAPHY); scripts/setup installs it:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("skipped: python3 cannot import cryptography (scripts/setup installs it)");
    false
}

#[test]
fn python_recomputes_every_vector() {
    if !have_cryptography() {
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("python3")
        .arg("docs/vectors/pads.py")
        .current_dir(&repo)
        .output()
        .expect("python3 not found: run scripts/setup (it installs python3)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pads.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut want = vectors();
    let mut differ = Vec::new();
    for line in stdout.lines() {
        // Names may hold spaces (`traps(300, 128)`); values never do.
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("pads.py printed no `name value`: {line:?}"));
        let Some(ours) = want.remove(name) else {
            panic!("pads.py printed {name:?}, which this test does not know (or printed it twice)");
        };
        if ours != value {
            differ.push(format!("{name}: pads.py {value}, core {ours}"));
        }
    }
    assert!(differ.is_empty(), "values differ:\n{}", differ.join("\n"));
    assert!(
        want.is_empty(),
        "pads.py did not print {:?}",
        want.keys().collect::<Vec<_>>()
    );
}
