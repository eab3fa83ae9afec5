// Test code only: each unwrap() is an assertion on a fixture.
use std::string::ToString;
use std::vec::Vec;

use super::*;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Config {
    #[serde(with = "postcard::fixint::le")]
    port: u16,
    name: u8,
}

fn keys(n: usize) -> Vec<u8> {
    (0..n * KEY_LEN).map(|i| (i * 7 + 3) as u8).collect()
}

fn trustee(flat: &[u8]) -> Node<'_> {
    Node {
        role: NodeRole::Trustee,
        index: 1,
        group_id: [1; 16],
        session_id: [2; 16],
        link_secret: [3; 32],
        session_secret: [4; 32],
        identity_secret: [9; 32],
        relay_key: [5; 32],
        relay: Relay::Ipv4([10, 0, 2, 2]),
        relay_port: 7000,
        clients: 3,
        trustees: 2,
        slots: 3,
        slot: 0,
        cell_len: 256,
        max_cell_len: 4096,
        peer_keys: PeerKeys::from_flat(flat).unwrap(),
        local_port: 0,
        min_clients: 2,
        min_anonymity: 2,
        log_window_millis: 600_000,
        log_window_bytes: 1 << 25,
        ipv4: None,
        wifi: None,
        pseudonym: None,
    }
}

/// A client's pseudonym secret and the relay's DH public key.
const PSEUDONYM: [u8; 64] = {
    let mut p = [7; 64];
    let mut i = 32;
    while i < 64 {
        p[i] = 8;
        i += 1;
    }
    p
};
const PSEUDONYM2: [u8; 64] = {
    let mut p = [0x11; 64];
    let mut i = 32;
    while i < 64 {
        p[i] = 0x22;
        i += 1;
    }
    p
};

fn client(flat: &[u8]) -> Node<'_> {
    Node {
        role: NodeRole::Client,
        index: 2,
        trustees: 2,
        slot: 1,
        local_port: 8080,
        link_secret: [6; 32],
        pseudonym: Pseudonym::from_bytes(&PSEUDONYM),
        ..trustee(flat)
    }
}

#[test]
fn node_round_trips_borrowing_the_keys() {
    let flat = keys(9);
    let node = trustee(&flat);
    let blob = node.to_blob();
    assert_eq!(blob.len(), HEADER_LEN + node.payload_len());
    assert_eq!(&blob[..8], b"DSPVTRST");
    let back = Node::parse(&blob, NodeRole::Trustee).unwrap();
    assert_eq!(back, node);
    assert_eq!(back.peer_keys.len(), 9);
    assert_eq!(back.peer_keys.get(2).unwrap(), flat[64..96]);
    assert_eq!(back.peer_keys.get(9), None);
    // Three clients' pad keys, three slots' pseudonym keys, three clients' identity
    // keys.
    assert_eq!(back.pad_keys(), &flat[..96]);
    assert_eq!(back.pseudonym_keys(), &flat[96..192]);
    assert_eq!(back.identity_keys(), &flat[192..]);
    let again: Vec<[u8; 32]> = back.peer_keys.iter().collect();
    assert_eq!(again.concat(), flat);
    // The keys are read in place, not copied.
    // local_port, min_clients, the policy (2, 600,000 ms and 2^25 B), no address, no
    // Wi-Fi, no pseudonym
    let at = blob.len() - flat.len() - 4 - 1 - 3 - 4 - 1;
    assert!(core::ptr::eq(
        back.peer_keys.as_bytes(),
        &blob[at..at + flat.len()]
    ));

    let flat = keys(7);
    let node = client(&flat);
    let mut area = [0xFFu8; 512];
    let n = node.emit(&mut area).unwrap();
    assert_eq!(&area[..8], b"DSPVCLNT");
    // Two trustees' pad keys, three slots' pseudonym keys, two trustees' identity keys.
    assert_eq!(
        (node.pad_keys(), node.pseudonym_keys(), node.identity_keys()),
        (&flat[..64], &flat[64..160], &flat[160..])
    );
    assert_eq!(Node::parse(&area, NodeRole::Client).unwrap(), node);
    assert_eq!(&area[..n], node.to_blob().as_slice());
}

#[test]
fn payload_bytes_are_the_documented_layout() {
    // One client's pad key, three slots' pseudonym keys, the client's identity key.
    let flat = [[0xAB; 32], [0xCD; 32], [0xCD; 32], [0xCD; 32], [0xEF; 32]].concat();
    let node = Node {
        clients: 1,
        trustees: 1,
        index: 0,
        min_clients: 1,
        min_anonymity: 1,
        log_window_millis: 1000,
        log_window_bytes: 300,
        relay_port: 300,
        cell_len: 100,
        max_cell_len: 128,
        ..trustee(&flat)
    };
    let blob = node.to_blob();
    let mut expect = Vec::new();
    expect.extend_from_slice(b"DSPVTRST");
    let mut payload = std::vec![7, 1, 0]; // format 7, Trustee, index 0
    payload.extend([1; 16]);
    payload.extend([2; 16]);
    payload.extend([3; 32]);
    payload.extend([4; 32]);
    payload.extend([9; 32]); // identity secret
    payload.extend([5; 32]);
    payload.extend([0, 10, 0, 2, 2, 0xAC, 0x02]); // Relay::Ipv4, address, port 300
    payload.extend([1, 1, 3, 0, 100, 0x80, 0x01]); // clients … max_cell_len 128
                                                   // 160 bytes of keys: the client's pad key, the slots', the client's identity key
    payload.extend([0xA0, 0x01]);
    payload.extend([0xAB; 32]);
    payload.extend([0xCD; 96]);
    payload.extend([0xEF; 32]);
    payload.extend([0, 1]); // local_port, min_clients
    payload.extend([1, 0xe8, 0x07, 0xac, 0x02]); // min_anonymity, window 1000 ms, 300 B
    payload.extend([0, 0, 0]); // no address, no Wi-Fi, no pseudonym
    expect.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    expect.extend_from_slice(&payload);
    assert_eq!(blob, expect);
}

#[test]
fn a_relay_name_and_wifi_are_the_documented_layout() {
    // The trustee's pad key, the slot's pseudonym key, the trustee's identity key.
    let flat = [[0xAB; 32], [0xCD; 32], [0xEF; 32]].concat();
    let node = Node {
        role: NodeRole::Client,
        index: 0,
        clients: 1,
        trustees: 1,
        slots: 1,
        slot: 0,
        local_port: 1080,
        min_clients: 1,
        min_anonymity: 1,
        log_window_millis: 1000,
        log_window_bytes: 300,
        cell_len: 100,
        max_cell_len: 128,
        relay: Relay::Name("relay.example.org"),
        relay_port: 7000,
        ipv4: Some(Ipv4Static {
            address: [192, 168, 1, 20],
            prefix_len: 24,
            gateway: [192, 168, 1, 1],
            dns_server: [0, 0, 0, 0],
        }),
        wifi: Some(Wifi {
            ssid: "home",
            passphrase: "correct horse",
        }),
        pseudonym: Pseudonym::from_bytes(&PSEUDONYM2),
        ..trustee(&flat)
    };
    let blob = node.to_blob();
    let mut payload = std::vec![7, 0, 0]; // format 7, Client, index 0
    payload.extend([1; 16]);
    payload.extend([2; 16]);
    payload.extend([3; 32]);
    payload.extend([4; 32]);
    payload.extend([9; 32]); // identity secret
    payload.extend([5; 32]);
    payload.extend([1, 17]); // Relay::Name, 17 bytes
    payload.extend(b"relay.example.org");
    payload.extend([0xd8, 0x36]); // port 7000 (varint)
    payload.extend([1, 1, 1, 0, 100, 0x80, 0x01]); // clients … max_cell_len 128
    payload.push(96);
    payload.extend([0xAB; 32]);
    payload.extend([0xCD; 32]);
    payload.extend([0xEF; 32]);
    payload.extend([0xb8, 0x08, 1]); // local_port 1080, min_clients
    payload.extend([1, 0xe8, 0x07, 0xac, 0x02]); // min_anonymity, window 1000 ms, 300 B
    payload.extend([1, 192, 168, 1, 20, 24, 192, 168, 1, 1, 0, 0, 0, 0]); // Some(Ipv4Static)
    payload.extend([1, 4]); // Some(Wifi), SSID of 4 bytes
    payload.extend(b"home");
    payload.push(13);
    payload.extend(b"correct horse");
    payload.extend([1, 64]); // Some(Pseudonym), 64 bytes: its secret, the relay's DH key
    payload.extend([0x11; 32]);
    payload.extend([0x22; 32]);
    let mut expect = b"DSPVCLNT".to_vec();
    expect.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    expect.extend_from_slice(&payload);
    assert_eq!(blob, expect);

    let back = Node::parse(&blob, NodeRole::Client).unwrap();
    assert_eq!(back, node);
    // Read in place, not copied.
    let Relay::Name(name) = back.relay else {
        panic!("a name")
    };
    let at = HEADER_LEN + 3 + 16 + 16 + 32 * 4 + 2;
    assert!(core::ptr::eq(name.as_bytes(), &blob[at..at + 17]));
    assert_eq!(node.relay.to_string(), "relay.example.org");
    assert_eq!(trustee(&flat).relay.to_string(), "10.0.2.2");
    // The passphrase is never shown.
    let shown = std::format!("{node:?}");
    assert!(
        shown.contains("home") && !shown.contains("horse"),
        "{shown}"
    );
    assert_eq!(std::format!("{:?}", back.pseudonym), "Some(Pseudonym(..))");
    let p = back.pseudonym.unwrap();
    assert_eq!(
        (p.secret(), p.relay_dh()),
        (Some([0x11; 32]), Some([0x22; 32]))
    );
    assert_eq!(Pseudonym::from_bytes(&[0; 63]), None);
}

#[test]
fn bad_static_addresses_are_named() {
    let flat = keys(9);
    let ok = Ipv4Static {
        address: [192, 168, 1, 20],
        prefix_len: 24,
        gateway: [192, 168, 1, 1],
        dns_server: [192, 168, 1, 1],
    };
    let bad = [
        Ipv4Static {
            prefix_len: 0,
            ..ok
        },
        Ipv4Static {
            prefix_len: 33,
            ..ok
        },
        Ipv4Static {
            address: [0, 0, 0, 0],
            ..ok
        },
        Ipv4Static {
            address: [127, 0, 0, 1],
            ..ok
        },
        Ipv4Static {
            address: [224, 0, 0, 1],
            ..ok
        },
        Ipv4Static {
            address: [192, 168, 1, 0],
            ..ok
        },
        Ipv4Static {
            address: [192, 168, 1, 255],
            ..ok
        },
    ];
    for ipv4 in bad {
        let node = Node {
            ipv4: Some(ipv4),
            ..trustee(&flat)
        };
        assert_eq!(
            Node::parse(&node.to_blob(), NodeRole::Trustee),
            Err(ProvisionError::Field("ipv4")),
            "{ipv4:?}"
        );
    }
    for ipv4 in [
        ok,
        Ipv4Static {
            address: [10, 0, 0, 1],
            prefix_len: 31,
            ..ok
        },
        Ipv4Static {
            address: [10, 0, 0, 0],
            prefix_len: 32,
            ..ok
        },
    ] {
        let node = Node {
            ipv4: Some(ipv4),
            ..trustee(&flat)
        };
        assert_eq!(Node::parse(&node.to_blob(), NodeRole::Trustee), Ok(node));
    }
}

#[test]
fn bad_relay_names_and_wifi_are_named() {
    let flat = keys(9);
    for name in [
        "",
        "-relay.org",
        "relay-.org",
        "relay..org",
        "relay.org.",
        "re lay.org",
        "relay_1.org",
        "10.0.0.1",
        "relais.\u{e9}t\u{e9}.fr",
    ] {
        let node = Node {
            relay: Relay::Name(name),
            ..trustee(&flat)
        };
        assert_eq!(
            Node::parse(&node.to_blob(), NodeRole::Trustee),
            Err(ProvisionError::Field("relay")),
            "{name:?}"
        );
    }
    let long = [["a"; 63].concat(), ["b"; 63].concat(), ["c"; 63].concat()].join(".");
    let ok = std::format!("{long}.{}", ["d"; 61].concat());
    let too_long = std::format!("{ok}e");
    assert_eq!(ok.len(), MAX_NAME_LEN);
    assert!(host_name_ok(&ok) && !host_name_ok(&too_long));
    assert!(host_name_ok("relay-1.example.org") && host_name_ok("localhost"));
    assert!(!host_name_ok(&std::format!("{}.org", ["a"; 64].concat())));

    let long_ssid = ["s"; 33].concat();
    for (ssid, passphrase) in [
        ("", "correct horse"),
        (long_ssid.as_str(), "correct horse"),
        ("home", "short"),
        ("home", "tab\there!"),
        ("home", "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}"),
    ] {
        let node = Node {
            wifi: Some(Wifi { ssid, passphrase }),
            ..trustee(&flat)
        };
        assert_eq!(
            Node::parse(&node.to_blob(), NodeRole::Trustee),
            Err(ProvisionError::Field("wifi")),
            "{ssid:?} {passphrase:?}"
        );
    }
    let phrase63 = ["p"; 63].concat();
    for (ssid, passphrase) in [("open cafe", ""), ("home", phrase63.as_str())] {
        let node = Node {
            wifi: Some(Wifi { ssid, passphrase }),
            ..trustee(&flat)
        };
        assert_eq!(Node::parse(&node.to_blob(), NodeRole::Trustee), Ok(node));
    }
    // A name that is not UTF-8 does not decode.
    let node = Node {
        relay: Relay::Name("relay.example.org"),
        ..trustee(&flat)
    };
    let mut blob = node.to_blob();
    let at = blob.windows(5).position(|w| w == b"relay").unwrap();
    blob[at] = 0xff;
    assert!(matches!(
        Node::parse(&blob, NodeRole::Trustee),
        Err(ProvisionError::Blob(BlobError::Payload(_)))
    ));
}

#[test]
fn a_blob_for_the_other_role_or_app_is_refused() {
    let flat = keys(9);
    let blob = trustee(&flat).to_blob();
    assert_eq!(
        Node::parse(&blob, NodeRole::Client),
        Err(ProvisionError::Blob(BlobError::WrongApp {
            expected: CLIENT_APP,
            found: TRUSTEE_APP
        }))
    );
    // The right app tag over a payload naming the other role.
    let mut relabelled = blob.clone();
    relabelled[4..8].copy_from_slice(&CLIENT_APP);
    let err = Node::parse(&relabelled, NodeRole::Client).unwrap_err();
    assert_eq!(
        err,
        ProvisionError::WrongRole {
            expected: NodeRole::Client,
            found: NodeRole::Trustee
        }
    );
    assert!(err.to_string().contains("Trustee"), "{err}");
    // A netcheck blob.
    let nchk = Blob {
        app: *b"NCHK",
        payload: &[1, 2, 3],
    };
    let mut area = [0u8; 32];
    nchk.emit(&mut area).unwrap();
    let err = Node::parse(&area, NodeRole::Trustee).unwrap_err();
    assert!(err
        .to_string()
        .contains("for app NCHK, this firmware is TRST"));
    let binary = Blob {
        app: [0, 0xff, b'A', 7],
        payload: &[],
    };
    binary.emit(&mut area).unwrap();
    let err = Node::parse(&area, NodeRole::Trustee).unwrap_err();
    assert!(
        err.to_string()
            .contains("for app 00ff4107 (hex), this firmware is TRST"),
        "{err}"
    );
    // Another format version, older or newer.
    for format in [1, 2, 3, 4, 5, 6, 8] {
        let mut other = blob.clone();
        other[HEADER_LEN] = format;
        assert_eq!(
            Node::parse(&other, NodeRole::Trustee),
            Err(ProvisionError::Format(format.into()))
        );
    }
}

#[test]
fn inconsistent_fields_are_named() {
    let flat = keys(9);
    let cases: [(Node<'_>, &str); 15] = [
        (
            Node {
                index: 2,
                ..trustee(&flat)
            },
            "index",
        ),
        (
            Node {
                clients: 4,
                ..trustee(&flat)
            },
            "peer_keys",
        ),
        (
            Node {
                cell_len: 8,
                ..trustee(&flat)
            },
            "cell_len",
        ),
        (
            Node {
                max_cell_len: 100,
                ..trustee(&flat)
            },
            "max_cell_len",
        ),
        (
            Node {
                relay_port: 0,
                ..trustee(&flat)
            },
            "relay_port",
        ),
        (
            Node {
                min_clients: 9,
                ..trustee(&flat)
            },
            "min_clients",
        ),
        (
            Node {
                min_anonymity: 0,
                ..trustee(&flat)
            },
            "min_anonymity",
        ),
        (
            Node {
                min_anonymity: 4,
                ..trustee(&flat)
            },
            "min_anonymity",
        ),
        (
            Node {
                log_window_bytes: 0,
                ..trustee(&flat)
            },
            "log_window_bytes",
        ),
        (
            Node {
                trustees: 17,
                ..trustee(&flat)
            },
            "trustees",
        ),
        (
            Node {
                slot: 3,
                ..client(&flat[..160])
            },
            "slot",
        ),
        (
            Node {
                local_port: 0,
                ..client(&flat[..160])
            },
            "local_port",
        ),
        (
            Node {
                pseudonym: None,
                ..client(&flat[..160])
            },
            "pseudonym",
        ),
        (
            Node {
                pseudonym: Some(Pseudonym(&PSEUDONYM[..63])),
                ..client(&flat[..160])
            },
            "pseudonym",
        ),
        (
            Node {
                pseudonym: client(&flat[..160]).pseudonym,
                ..trustee(&flat)
            },
            "pseudonym",
        ),
    ];
    for (node, name) in cases {
        let blob = node.to_blob();
        assert_eq!(
            Node::parse(&blob, node.role),
            Err(ProvisionError::Field(name)),
            "{name}"
        );
    }
    assert_eq!(PeerKeys::from_flat(&flat[..33]), None);
}

#[test]
fn cut_or_padded_payloads_are_refused() {
    let flat = keys(9);
    let blob = trustee(&flat).to_blob();
    for cut in [0, 5, HEADER_LEN, HEADER_LEN + 1, blob.len() - 1] {
        let mut short = blob[..cut].to_vec();
        if cut >= HEADER_LEN {
            let n = (cut - HEADER_LEN) as u32;
            short[8..12].copy_from_slice(&n.to_le_bytes());
        }
        assert!(Node::parse(&short, NodeRole::Trustee).is_err(), "cut {cut}");
    }
    let mut long = blob.clone();
    long.push(0);
    let n = (long.len() - HEADER_LEN) as u32;
    long[8..12].copy_from_slice(&n.to_le_bytes());
    assert_eq!(
        Node::parse(&long, NodeRole::Trustee),
        Err(ProvisionError::Blob(BlobError::TrailingBytes))
    );
    // An area longer than the blob is fine: the length field bounds the payload.
    let mut area = blob.clone();
    area.extend([0xFF; 100]);
    assert!(Node::parse(&area, NodeRole::Trustee).is_ok());
    // Random bytes never panic.
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..2000 {
        let mut b = blob.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = HEADER_LEN + (x as usize) % (b.len() - HEADER_LEN);
            b[i] = (x >> 32) as u8;
        }
        let _ = Node::parse(&b, NodeRole::Trustee);
    }
}

#[test]
fn emit_refuses_a_short_buffer() {
    let flat = keys(9);
    let node = trustee(&flat);
    let need = HEADER_LEN + node.payload_len();
    assert_eq!(
        node.emit(&mut std::vec![0; need - 1]),
        Err(BlobError::BufferTooSmall { needed: need })
    );
    let blob = Blob {
        app: *b"NCHK",
        payload: &[1, 2, 3],
    };
    assert_eq!(
        blob.emit(&mut [0; 14]),
        Err(BlobError::BufferTooSmall { needed: 15 })
    );
}

#[test]
fn container_bytes_are_the_documented_layout() {
    let blob = Blob {
        app: *b"NCHK",
        payload: &[0x58, 0x1b, 7],
    };
    let mut area = [0xffu8; 32];
    let len = blob.emit(&mut area).unwrap();
    assert_eq!(
        &area[..len],
        b"DSPVNCHK\x03\x00\x00\x00\x58\x1b\x07",
        "magic, app, little-endian length, payload"
    );
    assert_eq!(Blob::parse(&area).unwrap(), blob);
    let config: Config = blob.decode(*b"NCHK").unwrap();
    assert_eq!(
        config,
        Config {
            port: 7000,
            name: 7
        }
    );
}

#[test]
fn blank_or_garbage_area_is_missing() {
    assert_eq!(Blob::parse(&[0u8; 64]), Err(BlobError::Missing));
    assert_eq!(Blob::parse(&[0xffu8; 64]), Err(BlobError::Missing));
    assert_eq!(Blob::parse(b"DSPV"), Err(BlobError::Missing));
    assert_eq!(Blob::parse(&[]), Err(BlobError::Missing));
    let mut area = [0u8; 20];
    area[..12].copy_from_slice(b"DSPVNCHK\x09\x00\x00\x00");
    assert_eq!(
        Blob::parse(&area),
        Err(BlobError::Truncated {
            declared: 9,
            available: 8
        })
    );
    area[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Blob::parse(&area),
        Err(BlobError::Truncated { available: 8, .. })
    ));
}

#[test]
fn seed_is_read_and_bad_seeds_refused() {
    let mut area = [0u8; 64];
    assert_eq!(parse_seed(&area), Err(SeedError::Missing));
    area[..4].copy_from_slice(b"SEED");
    assert_eq!(parse_seed(&area), Err(SeedError::Degenerate));
    for (i, b) in area[4..36].iter_mut().enumerate() {
        *b = i as u8 * 7 + 1;
    }
    let seed = parse_seed(&area).unwrap();
    assert_eq!(seed[..3], [1, 8, 15]);
    assert_eq!(parse_seed(&area[..35]), Err(SeedError::Missing));
}

#[test]
fn the_session_id_lies_where_the_setup_image_writes_it() {
    let flat = keys(9);
    for index in [0u16, 1, 127, 128, 300] {
        let mut node = trustee(&flat);
        node.trustees = 400;
        node.index = index;
        let blob = node.to_blob();
        let at = node.session_id_offset();
        assert_eq!(blob[at..at + 16], node.session_id, "index {index}");
        assert_eq!(blob[at - 16..at], node.group_id, "index {index}");
    }
}

#[test]
fn a_setup_payload_round_trips_and_bad_ones_are_named() {
    let flat = keys(2);
    let setup = EpochSetup {
        group: [6; 32],
        epoch: 300,
        min_trustees: 1,
        trustees: PeerKeys::from_flat(&flat).unwrap(),
    };
    let blob = setup.to_blob();
    // Header, format 1, the fingerprint, epoch 300 (varint ac 02), min_trustees 1, then
    // 64 bytes of keys (varint 64).
    assert_eq!(&blob[..8], b"DSPVTSET");
    let payload = &blob[HEADER_LEN..];
    assert_eq!(payload[0], 1);
    assert_eq!(payload[1..33], [6; 32]);
    assert_eq!(payload[33..37], [0xac, 0x02, 1, 64]);
    assert_eq!(payload[37..], flat[..]);
    assert_eq!(EpochSetup::parse(&blob).unwrap(), setup);
    let mut bad = setup;
    bad.min_trustees = 3;
    assert_eq!(
        EpochSetup::parse(&bad.to_blob()),
        Err(ProvisionError::Field("min_trustees"))
    );
    bad.min_trustees = 0;
    assert_eq!(
        EpochSetup::parse(&bad.to_blob()),
        Err(ProvisionError::Field("min_trustees"))
    );
    let cut = EpochSetup {
        trustees: PeerKeys(&flat[..40]),
        ..setup
    };
    assert_eq!(
        EpochSetup::parse(&cut.to_blob()),
        Err(ProvisionError::Field("trustees"))
    );
    let mut other = blob.clone();
    other[HEADER_LEN] = 2;
    assert_eq!(EpochSetup::parse(&other), Err(ProvisionError::Format(2)));
    assert!(matches!(
        EpochSetup::parse(&trustee(&keys(9)).to_blob()),
        Err(ProvisionError::Blob(BlobError::WrongApp { .. }))
    ));
}
