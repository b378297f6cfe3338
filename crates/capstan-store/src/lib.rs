//! The cluster store: a strongly consistent, revisioned key-value store.
//!
//! This crate owns the [`Store`] contract and its two engines: [`SqliteStore`] (embedded, the default)
//! and [`EtcdStore`] (a real etcd cluster, for several servers). Nothing outside this crate knows SQLite
//! or etcd exist. It must not depend on any Kubernetes type: values are opaque bytes.
//!
//! # The contract
//! - Every successful write gets a new cluster-wide *revision*, strictly greater than every earlier one.
//!   A key remembers the revision that created it (`create_revision`) and that last wrote it
//!   (`mod_revision`).
//! - [`Store::create`] fails with [`StoreError::AlreadyExists`] if the key is present; [`Store::update`]
//!   and [`Store::delete`] compare-and-swap on the key's `mod_revision` and fail with
//!   [`StoreError::Conflict`] (carrying the current value) when it moved.
//! - [`Store::get`] and [`Store::list`] read at the current revision or at a past one until it is
//!   compacted. A list is one consistent snapshot: its pages (continue tokens) all read at the revision of
//!   the first page.
//! - [`Store::watch`] delivers every event after a revision for a prefix, in revision order, none missing
//!   and none twice. Asking for history older than the compaction point fails with
//!   [`StoreError::Compacted`].
//! - An acknowledged write is durable: it survives `kill -9` of the process.

mod continuation;
mod error;
mod etcd;
mod sqlite;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use error::StoreError;
pub use etcd::EtcdStore;
pub use sqlite::SqliteStore;

/// A store revision. Revisions are positive and grow with every write; 0 means "before any write".
pub type Revision = i64;

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this incarnation of the key.
    pub create_revision: Revision,
    /// Revision of the last write of the key (for a deletion event: the deletion's revision).
    pub mod_revision: Revision,
}

/// What a successful delete returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// Revision of the deletion itself.
    pub revision: Revision,
    /// The key's last state before it was deleted.
    pub prev: KeyValue,
}

/// Options of a [`Store::list`] call.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// At most this many items (0 or `None`: all).
    pub limit: Option<usize>,
    /// Token from the previous page's [`ListPage::continue_token`].
    pub continue_token: Option<String>,
    /// Read at this past revision instead of the current one. Ignored when a continue token is given:
    /// the token carries the revision of the first page.
    pub revision: Option<Revision>,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// Items in ascending key order.
    pub items: Vec<KeyValue>,
    /// The revision the page was read at.
    pub revision: Revision,
    /// Present when more items follow; pass it back in [`ListOptions::continue_token`].
    pub continue_token: Option<String>,
}

/// The kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was written while absent (`create_revision == mod_revision`).
    Created,
    /// The key was overwritten.
    Updated,
    /// The key was deleted.
    Deleted,
}

/// One change, as delivered by [`Store::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The key after the change. For [`EventKind::Deleted`] the value is empty and `mod_revision` is
    /// the deletion's revision.
    pub kv: KeyValue,
    /// The key before the change: `None` for [`EventKind::Created`], always present otherwise.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events. It ends after yielding an error.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// The cluster store. See the crate documentation for the contract every engine keeps.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it is present.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Overwrites `key` if its `mod_revision` is still `expected`.
    /// Fails with [`StoreError::NotFound`] or [`StoreError::Conflict`].
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue>;

    /// Deletes `key`, if `expected` is given only while its `mod_revision` is still that.
    /// Fails with [`StoreError::NotFound`] or [`StoreError::Conflict`].
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted>;

    /// Reads `key` at the current revision, or at `revision` if given.
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>>;

    /// Lists the keys that start with `prefix`, in ascending key order.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage>;

    /// Streams every change of a key under `prefix` with a revision greater than `after`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Forgets history before `revision`: reads at older revisions and watches from before it fail
    /// with [`StoreError::Compacted`] afterwards. Compacting at or below the current compaction point
    /// does nothing.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision of the last write.
    async fn current_revision(&self) -> Result<Revision>;
}

/// A continue token that resumes a list of `prefix` after `last_key`, reading at `revision`. Every
/// engine accepts it; the API server mints it for pages it serves from memory.
pub fn encode_continue(revision: Revision, last_key: &str) -> String {
    continuation::Continuation {
        revision,
        last_key: last_key.to_owned(),
    }
    .encode()
}

/// Decodes a continue token for a list of `prefix` into its revision and last key.
pub fn decode_continue(token: &str, prefix: &str) -> Result<(Revision, String)> {
    let c = continuation::Continuation::decode(token, prefix)?;
    Ok((c.revision, c.last_key))
}

/// Rejects keys that no engine can store the same way.
fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey("key must not be empty".into()));
    }
    Ok(())
}

/// The first key after every key that starts with `prefix`, or `None` when no such bound exists
/// (empty prefix, or a prefix of only 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(
            prefix_end(b"/registry/pods/"),
            Some(b"/registry/pods0".to_vec())
        );
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
    }

    #[test]
    fn prefix_end_is_unbounded_for_empty_or_all_ff() {
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn empty_key_is_rejected() {
        assert!(matches!(check_key(""), Err(StoreError::InvalidKey(_))));
        assert!(check_key("/a").is_ok());
    }
}
