//! Where `dissent up` keeps its state (the demo configuration), in each platform's place.
//!
//! Linux and other Unix systems: `$XDG_STATE_HOME/dissent`, or `~/.local/state/dissent`
//! (the XDG base directory rules: an unset, empty or relative `XDG_STATE_HOME` is
//! ignored). macOS: `~/Library/Application Support/dissent`. Windows:
//! `%LOCALAPPDATA%\dissent`. With no home folder at all: `.dissent` in the current folder.
//! The places are the `dirs` crate's: its state folder where the platform has one, else
//! its local data folder.

use std::path::PathBuf;

/// The default state folder of `dissent up`.
pub fn default_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map_or_else(|| PathBuf::from(".dissent"), |d| d.join("dissent"))
}
