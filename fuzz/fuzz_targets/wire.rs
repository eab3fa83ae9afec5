//! Every parser of bytes from the network: frames, messages, cell plaintexts, owned cells
//! (the relay's trap check and the check of a slot's tag), exchange outputs and blame
//! grounds (the blame round's frames are messages: `BlameRequest`, `BlameReveal`,
//! `BlameDhRequest`, `BlameDhProof`).
#![no_main]

use dissent_core::wire::{
    self, CellView, CellWriter, FrameReader, FrameStatus, Message, OutputsView, Record,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Frames: a body of exactly the declared length, within the reader's buffer.
    let capacity = usize::from(data.first().copied().unwrap_or(0)) * 64;
    match FrameReader::new(capacity).read(data) {
        Ok(FrameStatus::Frame { body, discard }) => {
            assert!(discard <= data.len() && discard <= capacity);
            assert_eq!(discard, wire::FRAME_HEADER_LEN + body.len());
        }
        Ok(FrameStatus::Incomplete { needed }) => assert!(needed > 0),
        Err(_) => {}
    }
    if let Ok(Some((body, used))) = wire::split_frame(data) {
        assert!(used <= data.len());
        if let Ok(msg) = Message::parse(body) {
            // Whatever parses re-encodes to something that parses to the same message.
            let mut out = vec![0u8; wire::MAX_FRAME_BODY + wire::FRAME_HEADER_LEN];
            let n = msg
                .emit_frame(&mut out)
                .expect("a parsed message fits a frame");
            let again = Message::parse(&out[wire::FRAME_HEADER_LEN..n]).expect("re-parse");
            assert_eq!(again, msg);
        }
    }
    // A cell that parses is written again byte for byte from its records.
    if let Ok(cell) = CellView::parse(data) {
        let mut out = vec![0xAAu8; data.len()];
        let mut writer = CellWriter::new(&mut out);
        for record in cell.records() {
            match record {
                Record::Data {
                    conn,
                    open,
                    payload,
                } => writer.push_data(conn, open, payload),
                Record::Close { conn } => writer.push_close(conn),
                Record::Abort { conn } => writer.push_abort(conn),
                Record::Grant { conn, bytes } => writer.push_grant(conn, bytes),
                Record::Accuse { conn, accusation } => {
                    let slot = conn.slot().expect("an accusation names a slot");
                    writer.push_accuse(slot, &accusation)
                }
            }
            .expect("a parsed record fits its own cell");
        }
        writer.finish(cell.next());
        assert_eq!(out, data);
    }
    // An owned cell: all zeros is empty, a forged one is disrupted and left as it was.
    {
        let key = wire::SlotKey::from_bytes([9; 32]);
        let ctx = wire::SlotContext {
            group_id: [1; 16],
            session_id: [2; 16],
            view: [3; 32],
            interval: 7,
            slot: 2,
            ordinal: 0,
        };
        let mut cell = data.to_vec();
        match wire::open(&mut cell, &ctx, &key) {
            wire::Opened::Empty => assert!(data.iter().all(|&b| b == 0)),
            wire::Opened::Disrupted => assert_eq!(cell, data),
            wire::Opened::Authentic => panic!("the fuzzer forged a slot's tag"),
        }
    }
    // An owned cell laid out around trap bytes: gathering and scattering back gives the
    // decoded cell byte for byte, and a cell with no sprung trap has zeros in every trap.
    {
        let traps = wire::TrapKey::from_bytes([5; 32]);
        let mut cell = data.to_vec();
        let sprung = wire::sprung(&cell, &traps, 300);
        assert_eq!(wire::gather(&mut cell, &traps, 300), wire::sealed_len(data.len()));
        wire::scatter(&mut cell, &traps, 300);
        assert_eq!(cell, data);
        if let Some(s) = sprung {
            assert!(s.count >= 1 && traps.is_trap_bit(300, data.len(), s.bit));
            assert_ne!(data[s.bit as usize / 8] & (1 << (s.bit % 8)), 0);
        }
        // The traps drawn once (what the relay reads) find and move the same bytes.
        let mut storage = vec![0u8; wire::traps_in(data.len())];
        let drawn = traps
            .draw(300, data.len(), &mut storage)
            .expect("storage for every trap");
        assert_eq!(drawn.sprung(data), sprung);
        let (mut a, mut b) = (data.to_vec(), data.to_vec());
        assert_eq!(drawn.gather(&mut a), wire::gather(&mut b, &traps, 300));
        assert_eq!(a, b);
        drawn.scatter(&mut a);
        wire::scatter(&mut b, &traps, 300);
        assert_eq!(a, b);
    }
    // Blame grounds: whatever parses is written again byte for byte, and forged trap
    // grounds never check.
    if let Ok(grounds) = dissent_core::blame::Grounds::parse(data) {
        let mut out = [0u8; dissent_core::blame::MAX_GROUNDS_LEN];
        let n = grounds.emit(&mut out).expect("parsed grounds fit");
        assert_eq!(&out[..n], data);
        let facts = dissent_core::blame::Facts {
            group_id: [1; 16],
            session_id: [2; 16],
            view: [3; 32],
            interval: 7,
            announced: dissent_core::crypto::pad_public_key(&[12; 32]),
            slot: 2,
            pseudonym: dissent_core::crypto::pad_public_key(&[9; 32]),
            exchange: 300,
            len: 1024,
            bit: 1234,
        };
        assert!(grounds.check(&facts).is_err(), "the fuzzer forged grounds");
    }
    // Outputs for a group of as many slots as the first two bytes say.
    if let Some((slots, rest)) = data.split_first_chunk::<2>() {
        let slots = u16::from_be_bytes(*slots);
        if let Ok(view) = OutputsView::parse(rest, slots) {
            assert_eq!(view.as_bytes(), rest);
            for _ in view.iter() {}
        }
    }
});
