use crate::{KeyValue, Revision};

/// Why a store operation failed. Outcomes a caller is expected to handle (`AlreadyExists`,
/// `NotFound`, `Conflict`, `Compacted`) have their own variants; engine failures carry their source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },

    #[error("key {key:?} not found")]
    NotFound { key: String },

    /// The key's `mod_revision` was not the expected one. `current` is its present state.
    #[error("key {key:?} was modified: expected revision {expected}, found {}", current.mod_revision)]
    Conflict {
        key: String,
        expected: Revision,
        current: Box<KeyValue>,
    },

    /// History at `requested` was compacted away.
    #[error("revision {requested} has been compacted")]
    Compacted { requested: Revision },

    #[error("revision {requested} is newer than the current revision")]
    FutureRevision { requested: Revision },

    #[error("invalid key: {0}")]
    InvalidKey(String),

    #[error("invalid continue token: {0}")]
    InvalidContinue(String),

    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),

    #[error("the store has shut down")]
    Closed,

    #[error("{0}")]
    Internal(String),
}
