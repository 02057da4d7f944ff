//! distcc's exit codes (distcc 3.4 `exitcode.h`): scripts and build tools look at them, so the
//! numbers are part of the compatibility contract.

/// An exit status that distcc itself (not the compiler) chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExitCode {
    Failed = 100,
    BadArguments = 101,
    BindFailed = 102,
    ConnectFailed = 103,
    CompilerCrashed = 104,
    OutOfMemory = 105,
    BadHostspec = 106,
    IoError = 107,
    Truncated = 108,
    ProtocolError = 109,
    CompilerMissing = 110,
    Recursion = 111,
    Setuid = 112,
    AccessDenied = 113,
    Busy = 114,
    NoSuchFile = 115,
    NoHosts = 116,
    Gone = 117,
    Timeout = 118,
    GssapiFailed = 119,
    LocalCpp = 120,
}

impl ExitCode {
    /// The numeric status, for `std::process::exit`.
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl From<ExitCode> for i32 {
    fn from(c: ExitCode) -> i32 {
        c.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_distcc() {
        assert_eq!(ExitCode::Failed.code(), 100);
        assert_eq!(ExitCode::BadHostspec.code(), 106);
        assert_eq!(ExitCode::Recursion.code(), 111);
        assert_eq!(ExitCode::NoHosts.code(), 116);
        assert_eq!(ExitCode::LocalCpp.code(), 120);
        assert_eq!(i32::from(ExitCode::Timeout), 118);
    }
}
