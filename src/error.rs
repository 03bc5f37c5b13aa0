//! Errors that stop a process from starting, with the message printed to the user and the
//! exit status.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a process could not start (or stopped early); its `Display` is the one line printed.
#[derive(Debug)]
pub enum Error {
    /// A command-line flag is unknown, lacks its value, or has a bad one (exit status 2).
    Usage(String),
    /// The state directory could not be created or opened.
    Dir { path: PathBuf, source: io::Error },
    /// Another process holds the state directory's lock.
    Locked { path: PathBuf, holder: String },
    /// The nodes file could not be read.
    Read { path: PathBuf, source: io::Error },
    /// The nodes file is not a JSON array; it is left untouched.
    Corrupt { path: PathBuf, reason: String },
    /// The listening address could not be bound.
    Bind { addr: String, source: io::Error },
    /// A thread or signal handler could not be started.
    Start {
        what: &'static str,
        source: io::Error,
    },
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => f.write_str(message),
            // create_dir_all on an existing file fails with "File exists": say what it means.
            Error::Dir { path, source } if source.kind() == io::ErrorKind::AlreadyExists => {
                write!(
                    f,
                    "cannot use directory {}: it is a file, not a directory",
                    path.display()
                )
            }
            Error::Dir { path, source } => {
                write!(f, "cannot use directory {}: {source}", path.display())
            }
            Error::Locked { path, holder } => write!(
                f,
                "directory {} is in use by another process ({holder}); one directory, one process",
                path.display()
            ),
            Error::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Error::Corrupt { path, reason } => write!(
                f,
                "{} is not a JSON array of nodes ({reason}); fix or move it away, it was left untouched",
                path.display()
            ),
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::Start { what, source } => write!(f, "cannot start {what}: {source}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_is_a_file_says_so() {
        let error = Error::Dir {
            path: PathBuf::from("x/nodes"),
            source: io::ErrorKind::AlreadyExists.into(),
        };
        assert_eq!(
            error.to_string(),
            "cannot use directory x/nodes: it is a file, not a directory"
        );
        assert_eq!(error.exit_code(), 1);
        assert_eq!(Error::Usage("bad".into()).exit_code(), 2);
    }
}
