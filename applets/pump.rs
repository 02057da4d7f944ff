//! The `pump` applet.

use std::ffi::OsString;

/// Entry point; returns the exit status.
pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("pump: not implemented yet");
    101
}
