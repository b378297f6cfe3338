//! Content negotiation for reads: plain JSON objects and lists, or the `meta.k8s.io/v1` Table that
//! `kubectl get` asks for (built by `capstan-printers`).

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
    let head = json!({"kind": resource.list_kind(), "apiVersion": resource.api_version(), "metadata": meta});
    let mut head = serde_json::to_vec(&head).unwrap_or_default();
    // `{...head...}` becomes `{...head...,"items":[a,b,c]}`.
    head.pop();
    head.extend_from_slice(b",\"items\":[");
    Output::List(ListBody::new(
        Bytes::from(head),
        items.iter().map(|o| o.json.clone()).collect(),
        Bytes::from_static(b"]}"),
    ))
}
