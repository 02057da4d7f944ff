//! The `distcc` applet: the client, under any name (`distcc`, or masquerading as `gcc`…).

use std::ffi::OsString;

/// Entry point; returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    distcc::client::main(args)
}
