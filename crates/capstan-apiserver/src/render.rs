//! Content negotiation for reads: plain JSON objects and lists, the `meta.k8s.io/v1` Table that
//! `kubectl get` asks for (built by `capstan-printers`), or `PartialObjectMetadata` (metadata
//! only), which client-go's metadata informers and kube-rs's `metadata_watcher` ask for.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use capstan_api::ResourceInfo;
use capstan_printers::IncludeObject;
use capstan_store::Revision;
use http::HeaderMap;
use serde_json::{Value, json};

use crate::body::ListBody;
use crate::cache::CachedObject;
use crate::request::Query;
use crate::rest::{Output, Reply};

const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
pub(crate) const PARTIAL_CONTENT_TYPE: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const PARTIAL_LIST_CONTENT_TYPE: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

/// Whether the client asked for metadata only: a JSON media type with
/// `as=PartialObjectMetadata` (single objects, watches) or `as=PartialObjectMetadataList` (lists) in
/// `meta.k8s.io`, before any plain one. Protobuf is not served, so its variant is skipped.
pub(crate) fn wants_partial(headers: &HeaderMap) -> bool {
    for media in headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let media = media.trim();
        if !(media.starts_with("application/json") || media.starts_with("*/*")) {
            continue;
        }
        return media.contains("as=PartialObjectMetadata") && media.contains("g=meta.k8s.io");
    }
    false
}

/// `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{...}}` of an object's
/// JSON: its metadata copied as it is, the rest skipped without being decoded. `None` for a
/// `Status` or anything without metadata.
pub(crate) fn partial_json(object: &[u8]) -> Option<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct MetadataOnly<'a> {
        #[serde(borrow, default)]
        kind: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow)]
        metadata: &'a serde_json::value::RawValue,
    }
    let only: MetadataOnly<'_> = serde_json::from_slice(object).ok()?;
    if only.kind.as_deref() == Some("Status") {
        return None;
    }
    let metadata = only.metadata.get().as_bytes();
    let mut out = Vec::with_capacity(metadata.len() + 72);
    out.extend_from_slice(
        br#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#,
    );
    out.extend_from_slice(metadata);
    out.push(b'}');
    Some(out)
}

/// Whether the client asked for a Table (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
pub(crate) fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| media.contains("as=Table") && media.contains("g=meta.k8s.io"))
}

pub(crate) fn include_object(query: &Query) -> IncludeObject {
    match query.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

/// A single object, as JSON or as a one-row Table.
pub(crate) fn object(
    resource: &ResourceInfo,
    object: &Value,
    headers: &HeaderMap,
    query: &Query,
) -> Reply {
    if wants_table(headers) {
        let rv = object["metadata"]["resourceVersion"].clone();
        let table = capstan_printers::table(
            resource,
            std::slice::from_ref(object),
            json!({"resourceVersion": rv}),
            include_object(query),
            SystemTime::now(),
        );
        let mut reply = Reply::json(200, &table);
        reply.content_type = TABLE_CONTENT_TYPE.into();
        return reply;
    }
    Reply::json(200, object)
}

/// The Table for cached objects.
pub(crate) fn table_json(
    resource: &ResourceInfo,
    objects: &[Arc<CachedObject>],
    revision: Option<Revision>,
    continue_token: Option<String>,
    include: IncludeObject,
) -> Value {
    let values: Vec<Value> = objects.iter().map(|o| o.value()).collect();
    let mut meta = json!({});
    if let Some(revision) = revision {
        meta["resourceVersion"] = json!(revision.to_string());
    }
    if let Some(token) = continue_token {
        meta["continue"] = json!(token);
    }
    capstan_printers::table(resource, &values, meta, include, SystemTime::now())
}

/// A list: the objects' cached JSON spliced into the list envelope without re-encoding each, streamed
/// in chunks as it is copied; or a Table.
pub(crate) fn list(
    resource: &ResourceInfo,
    items: &[Arc<CachedObject>],
    revision: Revision,
    continue_token: Option<String>,
    headers: &HeaderMap,
    query: &Query,
) -> Output {
    if wants_table(headers) {
        let table = table_json(
            resource,
            items,
            Some(revision),
            continue_token,
            include_object(query),
        );
        let mut reply = Reply::json(200, &table);
        reply.content_type = TABLE_CONTENT_TYPE.into();
        return Output::Reply(reply);
    }
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = continue_token {
        meta["continue"] = json!(token);
    }
    let partial = wants_partial(headers);
    let head = if partial {
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
    } else {
        json!({"kind": resource.list_kind(), "apiVersion": resource.api_version(), "metadata": meta})
    };
    let mut head = serde_json::to_vec(&head).unwrap_or_default();
    // `{...head...}` becomes `{...head...,"items":[a,b,c]}`.
    head.pop();
    head.extend_from_slice(b",\"items\":[");
    let items = if partial {
        items
            .iter()
            .filter_map(|o| partial_json(&o.json).map(Bytes::from))
            .collect()
    } else {
        items.iter().map(|o| o.json.clone()).collect()
    };
    let mut body = ListBody::new(Bytes::from(head), items, Bytes::from_static(b"]}"));
    if partial {
        body.content_type = PARTIAL_LIST_CONTENT_TYPE;
    }
    Output::List(body)
}
