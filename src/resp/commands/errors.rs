//! [`CmdError`]: every error reply a command can give, with Redis's texts.

use crate::store::StoreError;

/// The result of a command handler: the reply was written, or an error
/// reply must be.
pub type CmdResult = Result<(), CmdError>;

/// An error reply. `Display` is the full reply text, code first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    /// Argument count does not match the command's arity.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    /// Options that do not parse or do not combine.
    #[error("ERR syntax error")]
    Syntax,
    /// An argument or a stored value is not a 64-bit integer.
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// An argument or a stored value is not a float.
    #[error("ERR value is not a valid float")]
    NotFloat,
    /// INCR-family result out of the i64 range.
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    /// DECRBY of i64::MIN.
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    /// INCRBYFLOAT result is NaN or infinite.
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    /// An expire time that is not positive or overflows (`'{0}'`: command).
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(&'static str),
    /// RENAME of a missing key.
    #[error("ERR no such key")]
    NoSuchKey,
    /// The store refused a write under `noeviction` or with nothing evictable.
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    OutOfMemory,
    /// SETRANGE / APPEND result above 512 MB.
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    TooLarge,
    /// SETRANGE with a negative offset.
    #[error("ERR offset is out of range")]
    OffsetOutOfRange,
    /// SCAN cursor that is not an unsigned integer.
    #[error("ERR invalid cursor")]
    InvalidCursor,
    /// A command other than AUTH/HELLO before authentication.
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// Wrong password or user.
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    /// A subcommand the container command does not know.
    #[error("ERR unknown subcommand '{sub}'. Try {cmd} HELP.")]
    UnknownSubcommand {
        /// The subcommand as sent.
        sub: String,
        /// The container command, upper case.
        cmd: &'static str,
    },
    /// Any other error; the text carries its own code (`ERR ...`, `NOPROTO ...`).
    #[error("{0}")]
    Other(String),
}

impl From<StoreError> for CmdError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::OutOfMemory => CmdError::OutOfMemory,
            other => CmdError::Other(format!("ERR {other}")),
        }
    }
}

impl CmdError {
    /// An unknown-subcommand error for `sub` of `cmd`.
    pub fn unknown_sub(sub: &[u8], cmd: &'static str) -> Self {
        CmdError::UnknownSubcommand {
            sub: String::from_utf8_lossy(sub).into_owned(),
            cmd,
        }
    }
}
