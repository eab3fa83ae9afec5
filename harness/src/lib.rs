//! What the end-to-end tests and `dissent bench` share to run a local group of `dissent`
//! processes: the nodes' command lines ([`group`]), ports the system picks ([`ports`]), and
//! checked byte streams ([`pattern`]).
//!
//! Every node listens on port 0 and names the port it got in its log; [`ports::port_after`]
//! reads it back. Only what must be known before a process starts (the relay address
//! written into a configuration) comes from [`ports::reserve_port`]. It owns no process and
//! no protocol logic, and depends on nothing of the `dissent` binary but its command line.

pub mod group;
pub mod pattern;
pub mod ports;
