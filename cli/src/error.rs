//! The one error type of `hcictl` and the exit status each kind maps to.
//!
//! Operators and scripts branch on the exit status (0 success, 1 refused, 2 usage, 3 unreachable),
//! so every failure is classified here, in one place, instead of being decided ad hoc by commands.

use std::io;

/// Exit status: the request was refused (4xx, a 5xx other than 503, or an unusable answer).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: the command line (or a value it names, such as a token file) is unusable.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: no controller could be reached, or every one answered 503.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Why a command failed. `Display` is the text printed after `error: ` on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad flag value or a missing setting that clap could not catch.
    #[error("{0}")]
    Usage(String),
    /// The controller refused the request (or the CLI refused it on the controller's behalf, e.g. an
    /// unknown or ambiguous name).
    #[error("{code}: {message}")]
    Refused { status: u16, code: String, message: String },
    /// Every URL failed at the transport level without a single 503.
    #[error("cluster unreachable: tried {}", tried.join(", "))]
    Unreachable { tried: Vec<String> },
    /// At least one URL answered 503 and none answered anything better.
    #[error("cluster unavailable: {message} (tried {})", tried.join(", "))]
    Unavailable { message: String, tried: Vec<String> },
    /// A write was sent but no answer came back: it may or may not have been applied, so it is not
    /// retried on another member.
    #[error("no answer from {url}: {why}; the request may or may not have been applied, check before retrying")]
    NoAnswer { url: String, why: String },
    /// A 2xx whose body is not what the API promises.
    #[error("unexpected response from {url}: {why}")]
    BadResponse { url: String, why: String },
    /// Writing the result to stdout failed.
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

impl CliError {
    /// The process exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Refused { .. } | CliError::BadResponse { .. } | CliError::Output(_) => EXIT_REFUSED,
            CliError::Unreachable { .. } | CliError::Unavailable { .. } | CliError::NoAnswer { .. } => EXIT_UNREACHABLE,
        }
    }

    /// A closed stdout (`hcictl vm list | head`) is not a failure worth reporting.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }

    /// A refusal decided by the CLI itself, worded like the controller's own.
    pub fn refused(code: &str, message: impl Into<String>) -> Self {
        CliError::Refused { status: 0, code: code.to_string(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        let refused = CliError::Refused { status: 409, code: "conflict".into(), message: "taken".into() };
        assert_eq!(refused.exit_code(), 1);
        assert_eq!(refused.to_string(), "conflict: taken");
        let down = CliError::Unreachable { tried: vec!["http://a (refused)".into(), "http://b (refused)".into()] };
        assert_eq!(down.exit_code(), 3);
        assert_eq!(down.to_string(), "cluster unreachable: tried http://a (refused), http://b (refused)");
        let busy = CliError::Unavailable { message: "no leader".into(), tried: vec!["http://a".into()] };
        assert_eq!(busy.exit_code(), 3);
        assert!(busy.to_string().contains("no leader"));
        assert_eq!(CliError::NoAnswer { url: "u".into(), why: "w".into() }.exit_code(), 3);
        assert_eq!(CliError::BadResponse { url: "u".into(), why: "w".into() }.exit_code(), 1);
        let pipe = CliError::Output(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(pipe.is_broken_pipe());
        assert!(!CliError::Usage("x".into()).is_broken_pipe());
    }
}
