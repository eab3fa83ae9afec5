//! Links the selected board's memory map (`memory/<board>.x`, copied to `memory.x`) and
//! cortex-m-rt's `link.x` into device binaries (with feature `setup-image`,
//! `memory/<board>-setup.x`: the trustee's setup image). Host builds (unit tests) link nothing.
//! Sets `cfg(armv8m)` for ARMv8-M targets (their MPU differs, see `src/guard.rs`).

use std::path::PathBuf;
use std::{env, fs};

const BOARDS: &[&str] = &["mps2-an385", "nucleo-f767zi", "pico2-w"];

fn main() {
    println!("cargo:rerun-if-changed=memory");
    println!("cargo:rustc-check-cfg=cfg(armv8m)");
    let target = env::var("TARGET").unwrap_or_default();
    if !target.starts_with("thumb") {
        return;
    }
    if target.starts_with("thumbv8m") {
        println!("cargo:rustc-cfg=armv8m");
    }
    let selected: Vec<&str> = BOARDS
        .iter()
        .copied()
        .filter(|board| {
            let feature = format!("CARGO_FEATURE_{}", board.to_uppercase().replace('-', "_"));
            env::var_os(feature).is_some()
        })
        .collect();
    let board = match selected.as_slice() {
        [board] => *board,
        _ => panic!("select exactly one board feature (one of {BOARDS:?}), got {selected:?}"),
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The trustee's setup image has a memory map of its own: it shares the board with the
    // DC-net trustee image (README.md, "The setup on the device").
    let map = if env::var_os("CARGO_FEATURE_SETUP_IMAGE").is_some() {
        format!("{board}-setup.x")
    } else {
        format!("{board}.x")
    };
    let source = PathBuf::from("memory").join(map);
    fs::copy(&source, out.join("memory.x"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
    if board == "mps2-an385" {
        // cortex-m-rt's `device` feature includes a device.x naming the interrupt handlers;
        // this board's vectors all go to `DefaultHandler` (src/board/mps2_an385), so it names
        // none.
        fs::write(
            out.join("device.x"),
            "/* mps2-an385: every interrupt is DefaultHandler */\n",
        )
        .unwrap_or_else(|e| panic!("write device.x: {e}"));
    }
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    // Identical functions (monomorphised copies that compile to the same code) are kept
    // once: about 1.1 KiB of flash on each trustee.
    println!("cargo:rustc-link-arg-bins=--icf=all");
}
