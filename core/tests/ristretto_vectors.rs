//! Byte-exact vectors of the group operations and the proof of shuffle
//! (docs/protocol.md, "Group operations, proofs of shuffle"), and their independent check.
//!
//! `docs/vectors/shuffle-vectors.txt` pins every value: fixed seeds give these bytes, and
//! `docs/vectors/shuffle.py` (pure Python: its own Ristretto255, STROBE and merlin) verifies
//! them and refuses tampered copies. To rewrite the file after a deliberate change:
//! `DISSENT_WRITE_VECTORS=1 cargo test -p dissent-core --test ristretto_vectors`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use dissent_core::ristretto::elgamal::{self, joint_key, Ciphertext};
use dissent_core::ristretto::keys::{dh, SecretKey};
use dissent_core::ristretto::shuffle::{self, ProverSlot};
use dissent_core::ristretto::{dleq, encoding, generators};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const PINNED: &str = include_str!("../../docs/vectors/shuffle-vectors.txt");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// Every vector, as `name hex` lines (the file's format).
fn vectors() -> String {
    let mut out = String::new();
    let mut line = |name: &str, bytes: &[u8]| {
        let _ = writeln!(out, "{name} {}", hex(bytes));
    };

    // Generators.
    line("generator_h", generators::h().compress().as_bytes());
    for i in 0..3u32 {
        line(
            &format!("generator_h_{i}"),
            generators::h_i(i).compress().as_bytes(),
        );
    }

    // Keys, DH and a DLEQ proof of the DH secret (seed 1).
    let mut r = rng(1);
    let client = SecretKey::generate(&mut r);
    let trustee = SecretKey::generate(&mut r);
    line("client_secret", &client.to_bytes());
    line("client_public", client.public_key().as_bytes());
    line("trustee_secret", &trustee.to_bytes());
    line("trustee_public", trustee.public_key().as_bytes());
    let shared = dh(&client, trustee.public_key().as_bytes()).unwrap();
    line("dh_shared", &shared);
    let context = b"dissent-rs v3 test vector";
    line("dleq_context", context);
    let (s, proof) = dleq::prove_dh(context, &client, &trustee.public_key(), &mut r);
    assert_eq!(s, shared);
    line("dleq_proof", &proof);

    // Encodings.
    for (name, message) in [
        ("encoding_short", &b"dissent-rs"[..]),
        ("encoding_full", &b"accuse slot 7 exchange 1234567"[..]),
        ("encoding_empty", &b""[..]),
    ] {
        line(&format!("{name}_message"), message);
        line(
            &format!("{name}_point"),
            encoding::encode(message).unwrap().compress().as_bytes(),
        );
    }

    // Two trustees' joint key, a ciphertext and trustee 0's decryption share (seed 2).
    let mut r = rng(2);
    let secrets = [SecretKey::generate(&mut r), SecretKey::generate(&mut r)];
    let keys = [secrets[0].public_key(), secrets[1].public_key()];
    let joint = joint_key(&keys).unwrap();
    line("trustee0_public", keys[0].as_bytes());
    line("trustee1_public", keys[1].as_bytes());
    line("joint_key", joint.as_bytes());
    let message = encoding::encode(b"pseudonym 0").unwrap();
    let ct = Ciphertext::encrypt(&joint, &message, &mut r);
    line("ciphertext", &ct.to_bytes());
    let share = elgamal::decryption_share(&secrets[0], &ct, &mut r);
    line("decryption_share", &share);
    let d0 = elgamal::verify_share(&keys[0], &ct, &share).unwrap();
    let d1 = elgamal::verify_share(
        &keys[1],
        &ct,
        &elgamal::decryption_share(&secrets[1], &ct, &mut r),
    )
    .unwrap();
    assert_eq!(ct.strip(&d0).strip(&d1).a, message);

    // A shuffle of 3 rows of 2 ciphertexts under the joint key (seed 3).
    let mut r = rng(3);
    let (n, width) = (3, 2);
    let mut inputs = Vec::new();
    for i in 0..n {
        for k in 0..width {
            let m = encoding::encode(format!("row {i} column {k}").as_bytes()).unwrap();
            inputs.extend_from_slice(&Ciphertext::encrypt(&joint, &m, &mut r).to_bytes());
        }
    }
    let mut outputs = vec![0; shuffle::rows_len(n, width)];
    let mut proof = vec![0; shuffle::proof_len(n, width)];
    let mut slots = [ProverSlot::EMPTY; 3];
    let context = b"dissent-rs v3 test vector shuffle";
    shuffle::prove(
        context,
        &joint,
        width,
        &inputs,
        &mut outputs,
        &mut proof,
        &mut slots,
        &mut r,
    )
    .unwrap();
    shuffle::verify_streaming(context, &joint, width, &inputs, &outputs, &proof).unwrap();
    line("shuffle_context", context);
    line("shuffle_width", &[width as u8]);
    line("shuffle_inputs", &inputs);
    line("shuffle_outputs", &outputs);
    line("shuffle_proof", &proof);
    out
}

#[test]
fn vectors_match_the_pinned_file() {
    let generated = vectors();
    if std::env::var_os("DISSENT_WRITE_VECTORS").is_some() {
        let path = repo().join("docs/vectors/shuffle-vectors.txt");
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    for (want, got) in PINNED.lines().zip(generated.lines()) {
        assert_eq!(got, want);
    }
    assert_eq!(PINNED.lines().count(), generated.lines().count());
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_python(vectors: Option<&std::path::Path>) -> std::process::Output {
    // scripts/setup installs python3; a missing interpreter fails these tests, never skips.
    let mut command = Command::new("python3");
    command.arg("docs/vectors/shuffle.py").current_dir(repo());
    if let Some(path) = vectors {
        command.arg(path);
    }
    command
        .output()
        .expect("python3 not found: run scripts/setup (it installs python3)")
}

#[test]
fn python_refuses_tampered_vectors() {
    // One bit of the shuffle's outputs, then of its proof, then of the DLEQ proof.
    let dir = std::env::temp_dir().join(format!("dissent-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, at) in [
        ("shuffle_outputs", 70),
        ("shuffle_proof", 700),
        ("dleq_proof", 3),
    ] {
        let tampered: String = PINNED
            .lines()
            .map(|line| {
                let mut line = line.to_string();
                if line.starts_with(&format!("{name} ")) {
                    let i = name.len() + 1 + at;
                    let flipped = if &line[i..=i] == "0" { "1" } else { "0" };
                    line.replace_range(i..=i, flipped);
                }
                line + "\n"
            })
            .collect();
        assert_ne!(tampered, PINNED);
        let path = dir.join(format!("{name}.txt"));
        std::fs::write(&path, tampered).unwrap();
        let output = run_python(Some(&path));
        assert!(
            !output.status.success(),
            "{name}: tampered vectors accepted"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn python_verifies_the_vectors_independently() {
    let output = run_python(None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "shuffle.py failed:\n{stdout}\n{stderr}"
    );
    // The script ends with one line naming everything it checked.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("all vectors verified")),
        "{stdout}"
    );
}
