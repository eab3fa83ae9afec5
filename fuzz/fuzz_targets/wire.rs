//! Every parser of bytes from the network: frames, messages, cell plaintexts and output lists.
#![no_main]

use dissent_core::wire::{self, CellView, CellWriter, Message, OutputsView, Record};
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
    if let Ok(cell) = CellView::parse(data) {
        // A checked cell writes back to exactly its own bytes.
        let mut out = vec![0xa5u8; data.len()];
        let mut writer = CellWriter::new(&mut out);
        for record in cell.records() {
            match record {
                Record::Data {
                    conn,
                    open,
                    payload,
                } => {
                    let buf = writer
                        .reserve(conn, open, payload.len())
                        .expect("a parsed record fits its own cell");
                    buf.copy_from_slice(payload);
                }
                Record::Close { conn } => writer.push_close(conn).expect("a close fits"),
            }
        }
        let used = writer.finish(cell.next());
        assert_eq!(used, wire::NEXT_LEN + cell.records_len());
        assert_eq!(out, data);
    }
    if let Some((&slots, rest)) = data.split_first() {
        if let Ok(outputs) = OutputsView::parse(rest, u16::from(slots) * 8 + 1) {
            for output in outputs.iter() {
                let _ = output;
            }
        }
    }
});
