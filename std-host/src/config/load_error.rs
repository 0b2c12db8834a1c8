//! Why a file a setting names could not be used (TLS certificate and key, JWT public
//! key, users file) or a setting could not be made ready at start-up. `Display` is the
//! one-line start-up error: the flag, the file, what is wrong, never secret bytes.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::origin::BadOrigin;

/// A setting that could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file `flag` names could not be read.
    Read {
        /// The flag, e.g. `--tls-cert`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What reading it said.
        error: io::Error,
    },
    /// The file was read, but is not what `flag` needs.
    Content {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it, e.g. `no PEM certificate in the file`.
        problem: String,
    },
    /// The settings do not go together, e.g. a certificate the key does not match.
    Combination {
        /// The flags involved, e.g. `--tls-cert/--tls-key`.
        flags: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// An `--allowed-origin` entry.
    Origin(BadOrigin),
}

impl LoadError {
    /// A [`LoadError::Content`].
    pub fn content(
        flag: &'static str,
        path: impl Into<PathBuf>,
        problem: impl fmt::Display,
    ) -> Self {
        LoadError::Content {
            flag,
            path: path.into(),
            problem: problem.to_string(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Read { flag, path, error } => {
                write!(f, "{flag} {}: {error}", path.display())
            }
            LoadError::Content {
                flag,
                path,
                problem,
            } => write!(f, "{flag} {}: {problem}", path.display()),
            LoadError::Combination { flags, problem } => write!(f, "{flags}: {problem}"),
            LoadError::Origin(e) => write!(f, "--allowed-origin: {e}"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Read { error, .. } => Some(error),
            LoadError::Origin(e) => Some(e),
            _ => None,
        }
    }
}
