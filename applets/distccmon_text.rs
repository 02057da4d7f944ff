//! The `distccmon-text` applet.

use std::ffi::OsString;

/// Entry point; returns the exit status.
pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("distccmon-text: not implemented yet");
    101
}
