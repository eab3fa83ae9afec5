//! Every parser of bytes from the network: frames, messages and cell plaintexts.
#![no_main]

use dissent_core::wire::{self, CellRepr, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
    if let Ok(cell) = CellRepr::parse(data) {
        let mut out = vec![0u8; data.len()];
        cell.emit(&mut out)
            .expect("a parsed cell fits its own length");
        assert_eq!(out, data);
    }
});
