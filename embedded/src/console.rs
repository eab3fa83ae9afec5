//! The console: text lines to the board's console sink (semihosting under QEMU, a UART on
//! real boards), formatted in small chunks so no line needs a big buffer.

use core::fmt::{self, Write};

use heapless::Vec;

use crate::board::selected;

/// Prints a line to the board's console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::__print_line(format_args!($($arg)*))
    };
}

/// Buffers formatted text and hands it to the board in chunks.
struct Chunks {
    buf: Vec<u8, 128>,
}

impl Chunks {
    fn flush(&mut self) {
        selected::console_write(&self.buf);
        self.buf.clear();
    }
}

impl Write for Chunks {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            if self.buf.push(byte).is_err() {
                self.flush();
                // The buffer was just emptied, so there is room.
                let _ = self.buf.push(byte);
            }
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut out = Chunks { buf: Vec::new() };
    // Formatting into `Chunks` cannot fail; a `Display` impl that errors only cuts its line.
    let _ = out.write_fmt(args);
    let _ = out.write_str("\n");
    out.flush();
}
