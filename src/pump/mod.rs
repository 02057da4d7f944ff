//! Pump mode without Python: the include analyser, the include server that serves it over
//! a unix socket (distcc 3.4's `include_server.py`, reference §5.2–5.3), and the client side
//! that turns its answer into a protocol-3 request (§1.5, §5.4).
//!
//! * [`parse`]: directives-only scanner;
//! * [`defaults`]: the compiler's built-in include dirs;
//! * [`analyser`]: command line + scanner → the files a compile may read;

pub mod analyser;
pub mod defaults;
pub mod parse;

pub use analyser::{Analyser, Closure, NotCovered};
