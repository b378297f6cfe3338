//! The etcd engine: the contract mapped onto etcd's own revisions, transactions and watch.
//!
//! etcd already is a revisioned store, so this is a thin translation: compare-and-swap writes are
//! transactions comparing `mod_revision` (with `create_revision > 0` so that a swap never creates a
//! key), past reads pass a revision, and watches start at `after + 1` with `prev_kv` so that updates
//! and deletions carry the state they replaced.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KvClient,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
};

use crate::continuation::{Continuation, key_after};
use crate::{
    Deleted, Event, EventKind, KeyValue, ListOptions, ListPage, Result, Revision, Store,
    StoreError, WatchStream, check_key, prefix_end,
};

/// The largest gRPC message accepted from etcd: a list page of many objects can be far above
/// tonic's 4 MiB default.
const MAX_MESSAGE: usize = 1 << 30;

/// A handle to an etcd cluster. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoints: Vec<String>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl EtcdStore {
    /// Connects to the etcd members at `endpoints` (`http://host:port`).
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options)).await?;
        Ok(Self {
            client,
            endpoints: endpoints.to_vec(),
        })
    }

    fn kv(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

/// Maps etcd's revision errors onto the contract's; everything else stays an engine error.
fn map_error(error: etcd_client::Error, requested: Revision) -> StoreError {
    if let etcd_client::Error::GRpcStatus(status) = &error {
        if status
            .message()
            .contains("required revision has been compacted")
        {
            return StoreError::Compacted { requested };
        }
        if status
            .message()
            .contains("required revision is a future revision")
        {
            return StoreError::FutureRevision { requested };
        }
    }
    StoreError::Etcd(error)
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: String::from_utf8(kv.key().to_vec())
            .map_err(|e| StoreError::Internal(format!("etcd returned a non-UTF-8 key: {e}")))?,
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Internal("etcd response without a header".into()))
}

/// The failed branch of a compare-and-swap: the key is gone, or here is what it holds now.
fn swap_failure(
    key: &str,
    expected: Revision,
    responses: Vec<TxnOpResponse>,
) -> Result<StoreError> {
    let current = responses.iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get.kvs().first(),
        _ => None,
    });
    Ok(match current {
        None => StoreError::NotFound {
            key: key.to_owned(),
        },
        Some(kv) => StoreError::Conflict {
            key: key.to_owned(),
            expected,
            current: Box::new(to_kv(kv)?),
        },
    })
}

/// Key and options that select every key starting with `prefix`, from `start` on.
fn range(prefix: &str, start: Vec<u8>) -> (Vec<u8>, Option<Vec<u8>>) {
    // etcd has no empty key: the smallest one is "\0".
    let start = if start.is_empty() { vec![0] } else { start };
    (start, prefix_end(prefix.as_bytes()))
}

#[async_trait]
impl Store for EtcdStore {
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        check_key(key)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let response = self.kv().txn(txn).await?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = header_revision(response.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        check_key(key)?;
        let txn = Txn::new()
            .when([
                Compare::create_revision(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(
                key,
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv().txn(txn).await?;
        if !response.succeeded() {
            return Err(swap_failure(key, expected, response.op_responses())?);
        }
        let revision = header_revision(response.header())?;
        let create_revision = response
            .op_responses()
            .iter()
            .find_map(|r| match r {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| StoreError::Internal("etcd put without the previous key".into()))?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Deleted> {
        check_key(key)?;
        let mut compares = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv().txn(txn).await?;
        if !response.succeeded() {
            return Err(swap_failure(
                key,
                expected.unwrap_or(0),
                response.op_responses(),
            )?);
        }
        let revision = header_revision(response.header())?;
        let prev = response
            .op_responses()
            .iter()
            .find_map(|r| match r {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().map(to_kv),
                _ => None,
            })
            .ok_or_else(|| StoreError::Internal("etcd delete without the previous key".into()))??;
        Ok(Deleted { revision, prev })
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        check_key(key)?;
        let options = GetOptions::new().with_revision(revision.unwrap_or(0));
        let response = self
            .kv()
            .get(key, Some(options))
            .await
            .map_err(|e| map_error(e, revision.unwrap_or(0)))?;
        response.kvs().first().map(to_kv).transpose()
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        let (start, pinned) = match &options.continue_token {
            Some(token) => {
                let continuation = Continuation::decode(token, prefix)?;
                (
                    key_after(&continuation.last_key),
                    Some(continuation.revision),
                )
            }
            None => (prefix.as_bytes().to_vec(), options.revision),
        };
        let (key, end) = range(prefix, start);
        let mut get = GetOptions::new().with_revision(pinned.unwrap_or(0));
        get = match end {
            Some(end) => get.with_range(end),
            None => get.with_from_key(),
        };
        let limit = options.limit.filter(|l| *l > 0);
        if let Some(limit) = limit {
            get = get.with_limit(limit as i64);
        }
        let response = self
            .kv()
            .get(key, Some(get))
            .await
            .map_err(|e| map_error(e, pinned.unwrap_or(0)))?;
        let revision = match pinned {
            Some(revision) => revision,
            None => header_revision(response.header())?,
        };
        let items = response
            .kvs()
            .iter()
            .map(to_kv)
            .collect::<Result<Vec<_>>>()?;
        let continue_token = match (response.more(), items.last()) {
            (true, Some(last)) => Some(
                Continuation {
                    revision,
                    last_key: last.key.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(ListPage {
            items,
            revision,
            continue_token,
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let after = after.max(0);
        let (key, end) = range(prefix, prefix.as_bytes().to_vec());
        let mut options = WatchOptions::new()
            .with_start_revision(after + 1)
            .with_prev_key();
        options = match end {
            Some(end) => options.with_range(end),
            None => options.with_from_key(),
        };
        let mut stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(key, Some(options))
            .await?;
        // etcd answers a watch on compacted history with a cancelled "created" response.
        let first = stream.message().await?;
        let mut pending = VecDeque::new();
        if let Some(response) = first {
            check_watch_response(&response, after + 1)?;
            pending.extend(convert_events(&response));
        }
        let state = (stream, pending, false);
        Ok(Box::pin(futures::stream::unfold(
            state,
            move |(mut stream, mut pending, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(event) = pending.pop_front() {
                        return Some((event, (stream, pending, false)));
                    }
                    match stream.message().await {
                        Ok(Some(response)) => {
                            if let Err(e) = check_watch_response(&response, after + 1) {
                                return Some((Err(e), (stream, pending, true)));
                            }
                            pending.extend(convert_events(&response));
                        }
                        Ok(None) => {
                            let closed = StoreError::Internal("etcd closed the watch".into());
                            return Some((Err(closed), (stream, pending, true)));
                        }
                        Err(e) => return Some((Err(StoreError::Etcd(e)), (stream, pending, true))),
                    }
                }
            },
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self
            .kv()
            .compact(revision, None)
            .await
            .map_err(|e| map_error(e, revision))
        {
            Ok(_) | Err(StoreError::Compacted { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .kv()
            .get(vec![0u8], Some(GetOptions::new().with_count_only()))
            .await?;
        header_revision(response.header())
    }
}

fn check_watch_response(response: &WatchResponse, requested: Revision) -> Result<()> {
    if response.compact_revision() > 0 {
        return Err(StoreError::Compacted { requested });
    }
    if response.canceled() {
        return Err(StoreError::Internal(format!(
            "etcd cancelled the watch: {}",
            response.cancel_reason()
        )));
    }
    Ok(())
}

fn convert_events(response: &WatchResponse) -> Vec<Result<Event>> {
    response
        .events()
        .iter()
        .map(|event| {
            let kv = event
                .kv()
                .ok_or_else(|| StoreError::Internal("etcd event without a key".into()))
                .and_then(to_kv)?;
            let prev = event.prev_kv().map(to_kv).transpose()?;
            Ok(match event.event_type() {
                EventType::Put if kv.create_revision == kv.mod_revision => Event {
                    kind: EventKind::Created,
                    kv,
                    prev: None,
                },
                EventType::Put => Event {
                    kind: EventKind::Updated,
                    kv,
                    prev,
                },
                EventType::Delete => {
                    // etcd's deletion event carries only the key and the deletion's revision.
                    let create_revision = prev.as_ref().map(|p| p.create_revision).unwrap_or(0);
                    Event {
                        kind: EventKind::Deleted,
                        kv: KeyValue {
                            create_revision,
                            value: Bytes::new(),
                            ..kv
                        },
                        prev,
                    }
                }
            })
        })
        .collect()
}
