//! faultcheck: proves that a board stopped by a fault says so and stops (real boards
//! reset): it panics, overflows its stack, or hangs the executor, as its provisioning blob
//! (app `FCHK`, one byte) says, and the board's handlers must end the run with
//! [`dissent_embedded::EXIT_PANIC`], [`dissent_embedded::EXIT_STACK_OVERFLOW`] or
//! [`dissent_embedded::EXIT_WATCHDOG`].
#![no_std]
#![no_main]

use dissent_embedded::provision::Blob;
use dissent_embedded::{println, Board};
use embassy_executor::Spawner;

/// The app tag in the provisioning blob.
const APP: [u8; 4] = *b"FCHK";

#[cortex_m_rt::entry]
fn main() -> ! {
    dissent_embedded::run(start)
}

fn start(spawner: Spawner, board: Board) {
    let mode = match Blob::parse(board.provisioning) {
        Ok(blob) if blob.app == APP && blob.payload.len() == 1 => blob.payload[0],
        _ => {
            println!("faultcheck: no FCHK blob with one byte");
            dissent_embedded::exit(1)
        }
    };
    // The pool holds this one task, spawned once.
    spawner.spawn(fault(mode).unwrap());
}

#[embassy_executor::task]
async fn fault(mode: u8) {
    // Let the board's own tasks (network, watchdog) run first.
    embassy_time::Timer::after_millis(100).await;
    match mode {
        1 => panic!("faultcheck: a panic on purpose"),
        2 => {
            println!("faultcheck: recursing without end");
            let depth = recurse(core::hint::black_box(0));
            println!("faultcheck: came back from depth {}", depth);
        }
        3 => {
            println!("faultcheck: hanging the executor");
            loop {
                core::hint::spin_loop();
            }
        }
        _ => println!("faultcheck: unknown mode {}", mode),
    }
    dissent_embedded::exit(1)
}

/// Calls itself with a 256-byte frame until the stack runs out.
#[inline(never)]
#[allow(unconditional_recursion)] // On purpose: only the stack guard ends it.
fn recurse(depth: u32) -> u32 {
    let mut frame = [0u8; 256];
    frame[depth as usize % 256] = depth as u8;
    core::hint::black_box(&mut frame);
    recurse(depth + 1).wrapping_add(u32::from(frame[0]))
}
