//! The link layer's parsers of untrusted bytes: the record splitter and the record opener.
//!
//! The input is split into records under each kind of reader; then it drives a real link:
//! chunks of it are sealed as records, some tampered with, replaced by raw bytes or left
//! out, and the other end opens the stream. Every record opens to exactly its plaintext
//! until the first one that is not the next sealed record intact; from there on every
//! record fails.
#![no_main]

use dissent_core::crypto::public_key;
use dissent_core::link::{
    Initiator, RecordReader, Responder, Transport, HEADER_LEN, MAX_MESSAGE, MAX_RECORD,
    MIN_MESSAGE, OVERHEAD, REQUEST_LEN, RESPONSE_LEN,
};
use libfuzzer_sys::fuzz_target;

const GROUP: [u8; 16] = [7; 16];
const SESSION: [u8; 16] = [8; 16];
const NODE: [u8; 32] = [1; 32];
const RELAY: [u8; 32] = [2; 32];

/// A finished handshake: the node's and the relay's ends.
fn link() -> (Transport, Transport) {
    let mut node =
        Initiator::new(&NODE, &public_key(&RELAY), &GROUP, &SESSION, [3; 32]).expect("fixed keys");
    let mut relay = Responder::new(&RELAY, &GROUP, &SESSION, [4; 32]).expect("fixed keys");
    let mut request = [0u8; HEADER_LEN + REQUEST_LEN];
    let n = node
        .write_request(&mut request)
        .expect("room for the request");
    relay
        .read_request(&request[HEADER_LEN..n])
        .expect("an honest request");
    let mut response = [0u8; HEADER_LEN + RESPONSE_LEN];
    let (n, relay) = relay
        .write_response(&mut response)
        .expect("room for the response");
    let node = node
        .read_response(&response[HEADER_LEN..n])
        .expect("an honest response");
    (node, relay)
}

/// Splits `buf` into records until it runs out or a length is refused.
fn split_all(mut reader: RecordReader, mut buf: &[u8]) {
    loop {
        match reader.split(buf) {
            Ok(Some((message, used))) => {
                assert_eq!(used, HEADER_LEN + message.len());
                assert!((MIN_MESSAGE..=MAX_MESSAGE).contains(&message.len()));
                assert_eq!(message, &buf[HEADER_LEN..used]);
                buf = &buf[used..];
            }
            Ok(None) => {
                // Only an incomplete record waits for more.
                if let Some(h) = buf.first_chunk::<HEADER_LEN>() {
                    assert!(buf.len() < HEADER_LEN + usize::from(u16::from_be_bytes(*h)));
                }
                return;
            }
            Err(_) => return,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    split_all(RecordReader::responder(), data);
    split_all(RecordReader::initiator(), data);
    split_all(RecordReader::transport(), data);

    let Some((&mode, mut input)) = data.split_first() else {
        return;
    };
    let (node, relay) = link();
    let (mut sealer, mut opener) = if mode & 1 == 0 {
        (node.split().0, relay.split().1)
    } else {
        (relay.split().0, node.split().1)
    };
    // The stream, and for each record its plaintext if it should open.
    let mut stream = Vec::new();
    let mut expected: Vec<Option<Vec<u8>>> = Vec::new();
    let mut intact = true;
    while let [op, len, rest @ ..] = input {
        let n = usize::from(*len).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        input = tail;
        let start = stream.len();
        match op % 4 {
            // Sealed as is.
            0 => {
                stream.resize(start + n + OVERHEAD, 0);
                let used = sealer.seal(chunk, &mut stream[start..]).expect("room");
                assert_eq!(used, n + OVERHEAD);
                expected.push(intact.then(|| chunk.to_vec()));
            }
            // Sealed, then one bit of the message flipped.
            1 => {
                stream.resize(start + n + OVERHEAD, 0);
                sealer.seal(chunk, &mut stream[start..]).expect("room");
                let at = start + HEADER_LEN + usize::from(op >> 2) % (n + OVERHEAD - HEADER_LEN);
                stream[at] ^= 1 << (op % 8);
                intact = false;
                expected.push(None);
            }
            // Raw bytes where a record should be, padded to the shortest message.
            2 => {
                let len = n.max(MIN_MESSAGE);
                stream.extend_from_slice(&(len as u16).to_be_bytes());
                stream.extend_from_slice(chunk);
                stream.resize(start + HEADER_LEN + len, 0);
                intact = false;
                expected.push(None);
            }
            // Sealed but never sent: the records after it are out of order.
            _ => {
                let mut lost = vec![0u8; n + OVERHEAD];
                sealer.seal(chunk, &mut lost).expect("room");
                intact = false;
            }
        }
    }

    let mut reader = RecordReader::transport();
    let mut rest = &stream[..];
    let mut out = vec![0u8; MAX_RECORD];
    for want in expected {
        let (message, used) = reader
            .split(rest)
            .expect("every record has a valid length")
            .expect("every record is whole");
        let got = opener.open(message, &mut out);
        match want {
            Some(plain) => assert_eq!(&out[..got.expect("an intact record opens")], &plain[..]),
            None => assert!(got.is_err(), "a damaged or out-of-order record opened"),
        }
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
});
