//! Embedded shell of dissent-rs (placeholder).
//!
//! This crate will run a trustee or a client on microcontroller boards with embassy and
//! embassy-net, as a thin shell around `dissent_core`: a `Board` for each supported board
//! (an emulated one for QEMU in CI), one binary per role. Today it only proves that the
//! protocol core links into a `thumbv7m-none-eabi` image without an allocator.
#![no_std]

pub use dissent_core as core_protocol;
