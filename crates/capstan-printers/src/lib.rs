//! Server-side printing: the `meta.k8s.io/v1` `Table` kube-apiserver returns when a client asks for
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, which is what `kubectl get` prints.
//!
//! Each resource Kubernetes has a printer for gets the same columns, column descriptions and cell
//! values as kube-apiserver 1.32 (`pkg/printers/internalversion`): the pod `STATUS` reason, the
//! `RESTARTS (5m ago)` form, node roles, service ports, event sources and so on. Every other resource
//! gets the default table (`Name`, `Created At`). Ages use the rules of apimachinery's
//! `HumanDuration`. Like kube-apiserver, the table always carries the wide (priority 1) cells;
//! kubectl shows them only with `-o wide`.
//!
//! Pure functions on `serde_json::Value`s: no IO, no clock (the caller passes `now`), and no panic on
//! any input, since objects come from users. This crate depends on `capstan-api` only for
//! `ResourceInfo`; it must not depend on the server, the store or any component.

mod columns;
mod custom;
mod json;
mod labels;
mod printers;
mod time;

use std::time::SystemTime;

use capstan_api::ResourceInfo;
use serde_json::{Map, Value, json};

/// The `includeObject` query parameter: what each row carries besides its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// The object's metadata as a `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the query parameter's value; an empty value is the default. `None` for values
    /// kube-apiserver rejects (with 400 Bad Request).
    pub fn from_query(value: &str) -> Option<IncludeObject> {
        match value {
            "" | "Metadata" => Some(IncludeObject::Metadata),
            "None" => Some(IncludeObject::None),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// Builds the Table for `objects` of `resource` (already filtered). `list_meta` is the list's
/// metadata (`resourceVersion`, `continue`, `remainingItemCount`), copied into the Table's
/// metadata; for a single object pass `{"resourceVersion": <its resourceVersion>}`. `now` is the
/// current time, for ages.
pub fn table(
    resource: &ResourceInfo,
    objects: &[Value],
    list_meta: Value,
    include: IncludeObject,
    now: SystemTime,
) -> Value {
    let now = time::Time::from_system(now);
    let printer = printers::find(resource.group, resource.plural);
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let row = match resource.custom {
                Some(custom) => printers::Row {
                    cells: custom::cells(custom, object, now),
                    conditions: None,
                },
                None => (printer.row)(object, now),
            };
            let mut out = Map::new();
            out.insert("cells".to_owned(), Value::Array(row.cells));
            if let Some(conditions) = row.conditions {
                out.insert("conditions".to_owned(), conditions);
            }
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    out.insert("object".to_owned(), partial_object_metadata(object));
                }
                IncludeObject::Object => {
                    out.insert("object".to_owned(), full_object(resource, object));
                }
            }
            Value::Object(out)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": table_metadata(&list_meta),
        "columnDefinitions": match resource.custom {
            Some(custom) => Value::Array(custom::columns(custom)),
            None => Value::Array(printer.columns().to_vec()),
        },
        "rows": rows,
    })
}

/// The `ListMeta` of the table: only the fields kube-apiserver copies, omitted when empty.
fn table_metadata(list_meta: &Value) -> Value {
    let mut meta = Map::new();
    for field in ["resourceVersion", "continue"] {
        if let Some(value) = list_meta
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            meta.insert(field.to_owned(), Value::from(value));
        }
    }
    if let Some(count) = list_meta.get("remainingItemCount").and_then(Value::as_i64) {
        meta.insert("remainingItemCount".to_owned(), Value::from(count));
    }
    Value::Object(meta)
}

fn partial_object_metadata(object: &Value) -> Value {
    let metadata = object
        .get("metadata")
        .filter(|m| m.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
}

/// The object as stored, with `kind` and `apiVersion` filled in if the stored copy lacks them.
fn full_object(resource: &ResourceInfo, object: &Value) -> Value {
    let mut object = object.clone();
    if let Value::Object(fields) = &mut object {
        fields
            .entry("kind")
            .or_insert_with(|| Value::from(resource.kind));
        fields
            .entry("apiVersion")
            .or_insert_with(|| Value::from(resource.api_version()));
    }
    object
}
