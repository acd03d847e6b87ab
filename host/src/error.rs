//! Errors shared by sources, sinks and the engine.

/// An error from a store (source or destination). The store says whether trying again
/// can help; the engine owns the retrying.
#[derive(Debug, thiserror::Error, Clone)]
#[error("{message}")]
pub struct StoreError {
    pub message: String,
    pub retriable: bool,
}

impl StoreError {
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retriable: false,
        }
    }

    pub fn retriable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retriable: true,
        }
    }
}

/// A bad configuration or command line: exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{kind} is not built yet in this version of ckpt-migrate")]
    NotBuiltYet { kind: String },
}

/// Why a run stopped before finishing.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: StoreError,
    },
    #[error("{0}")]
    Io(String),
    #[error(
        "stopped: {failed} records failed, more than --max-errors {limit} (they are in the dead-letter file; the run can be resumed with --resume)"
    )]
    TooManyErrors { failed: u64, limit: u64 },
    #[error(
        "interrupted after {written} checkpoints were written; the state is in {state}: run the same command with --resume to continue"
    )]
    Interrupted { written: u64, state: String },
}

impl RunError {
    pub fn store(context: impl Into<String>, source: StoreError) -> Self {
        RunError::Store {
            context: context.into(),
            source,
        }
    }

    /// The process exit code for this error (0 and 1 are for finished runs).
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) => 2,
            RunError::Store { .. } | RunError::Io(_) | RunError::TooManyErrors { .. } => 3,
            RunError::Interrupted { .. } => 130,
        }
    }
}

/// Why a store could not be opened: its settings, or the store itself.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
