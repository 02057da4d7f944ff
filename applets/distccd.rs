//! The `distccd` applet.

use std::ffi::OsString;

/// Entry point; returns the exit status.
pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("distccd: not implemented yet");
    101
}
