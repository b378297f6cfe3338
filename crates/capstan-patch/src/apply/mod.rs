//! Server-side apply (`kubectl apply --server-side`) and the `metadata.managedFields` bookkeeping of
//! ordinary writes.
//!
//! Each managedFields entry names a manager, its operation (`Apply` or `Update`) and the set of
//! fields it owns (`fieldsV1`). [`apply`] merges an applied configuration into the live object,
//! reports conflicts with other owners of fields whose values it changes (unless forced, which
//! moves ownership), and removes the fields the manager applied before but no longer applies and
//! nobody else owns. [`record_update`] gives an ordinary writer the fields it changed.
//!
//! Not done: defaulting of the applied configuration before computing ownership (kube-apiserver
//! defaults list-map keys such as `protocol`, which is handled; other defaults are not), the
//! `status` and `scale` subresources' own field resets, and version conversion of managed fields.

mod fieldset;

use capstan_api::ResourceInfo;
use serde_json::{Map, Value, json};

use crate::meta::{self, Child, FieldMeta, ListType, Ty};
use fieldset::{FieldSet, display_path, key_element, remove_at, to_set};

/// The result of an apply: the object to store, with `metadata.managedFields` updated.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOutcome {
    pub object: Value,
}

/// One field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    /// The manager as kube-apiserver prints it: `"kubectl-client-side-apply" using apps/v1`.
    pub manager: String,
    /// The field path: `.spec.replicas`.
    pub field: String,
}

/// Why an apply or an update's bookkeeping failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (kube-apiserver answers 409 Conflict).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration or the stored managed fields are not usable (400/422).
    #[error("{0}")]
    Invalid(String),
}

fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [conflict] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflict.manager, conflict.field
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        for conflict in conflicts.iter().filter(|c| c.manager == manager) {
            lines.push(format!("- {}", conflict.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    /// Whether this entry belongs to `manager` doing `operation` (updates are also per version).
    fn is(&self, manager: &str, operation: &str, api_version: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.is_none()
            && (operation == APPLY || self.api_version == api_version)
    }

    /// How kube-apiserver names the manager in conflicts.
    fn display(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(subresource) = &self.subresource {
            out.push_str(&format!(" with subresource {subresource:?}"));
        }
        if self.operation == UPDATE {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    fn parse(value: &Value) -> Result<Entry, ApplyError> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let fields = match value.get("fieldsV1") {
            Some(fields) => FieldSet::from_fields_v1(fields)
                .map_err(|e| invalid(format!("metadata.managedFields: {e}")))?,
            None => FieldSet::default(),
        };
        Ok(Entry {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation").unwrap_or_else(|| UPDATE.to_owned()),
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource"),
            fields,
        })
    }

    fn render(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("manager".to_owned(), json!(self.manager));
        entry.insert("operation".to_owned(), json!(self.operation));
        entry.insert("apiVersion".to_owned(), json!(self.api_version));
        if let Some(time) = &self.time {
            entry.insert("time".to_owned(), json!(time));
        }
        entry.insert("fieldsType".to_owned(), json!("FieldsV1"));
        entry.insert("fieldsV1".to_owned(), self.fields.to_fields_v1());
        if let Some(subresource) = &self.subresource {
            entry.insert("subresource".to_owned(), json!(subresource));
        }
        Value::Object(entry)
    }
}

fn invalid(message: impl Into<String>) -> ApplyError {
    ApplyError::Invalid(message.into())
}

/// Fields no manager owns: identity and server-set metadata.
const STRIPPED: &[&[&str]] = &[
    &["f:apiVersion"],
    &["f:kind"],
    &["f:metadata", "f:name"],
    &["f:metadata", "f:namespace"],
    &["f:metadata", "f:creationTimestamp"],
    &["f:metadata", "f:selfLink"],
    &["f:metadata", "f:uid"],
    &["f:metadata", "f:clusterName"],
    &["f:metadata", "f:generation"],
    &["f:metadata", "f:managedFields"],
    &["f:metadata", "f:resourceVersion"],
];

fn owned_fields(object: &Value, ty: Ty) -> FieldSet {
    let mut set = to_set(object, ty);
    for path in STRIPPED {
        let path: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        set.remove_subtree(&path);
    }
    let metadata = ["f:metadata".to_owned()];
    if !set.touches(&metadata) {
        set.remove_subtree(&metadata);
    }
    set
}

/// Fields set in `new` that `old` lacks or holds with another value, and fields `old` set that
/// `new` no longer has.
fn changes(old: Option<&Value>, new: &Value, ty: Ty) -> (FieldSet, FieldSet) {
    let new_set = owned_fields(new, ty);
    let Some(old) = old else {
        // A new object: every field it sets is a change.
        return (new_set, FieldSet::default());
    };
    let changed = fieldset::changed_members(&new_set, old, new, ty);
    let removed = owned_fields(old, ty).difference(&new_set);
    (changed, removed)
}

fn managed_entries(object: &Value) -> Result<Option<Vec<Entry>>, ApplyError> {
    match object.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(entries)) => entries
            .iter()
            .map(Entry::parse)
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(invalid("metadata.managedFields must be a list")),
    }
}

fn write_entries(object: &mut Value, entries: Vec<Entry>) {
    let entries: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::render)
        .collect();
    if let Some(metadata) = object
        .as_object_mut()
        .and_then(|o| o.get_mut("metadata"))
        .and_then(Value::as_object_mut)
    {
        if entries.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".to_owned(), Value::Array(entries));
        }
    } else if !entries.is_empty()
        && let Some(object) = object.as_object_mut()
    {
        object.insert("metadata".to_owned(), json!({"managedFields": entries}));
    }
}

fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    object
}

/// Removes `null`s: an applied configuration's nulls set nothing.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(list) => list.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Merges an applied configuration into the live object: maps merge, atomic values are replaced,
/// list maps merge by key (new items appended), sets are unions.
fn merge(live: Option<&Value>, applied: &Value, child: Child) -> Value {
    match (live, applied) {
        (Some(Value::Object(live)), Value::Object(applied)) if !child.ty.atomic() => {
            let mut out = live.clone();
            for (key, value) in applied {
                let merged = merge(live.get(key), value, child.ty.child(key));
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(live)), Value::Array(applied)) => match child.meta.list_type {
            ListType::Atomic => Value::Array(applied.clone()),
            ListType::Set => {
                let mut out = live.clone();
                out.extend(applied.iter().filter(|item| !live.contains(item)).cloned());
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let item_child = Child {
                    ty: child.ty,
                    meta: FieldMeta::UNKNOWN,
                    declared: true,
                };
                let key = |item: &Value| key_element(item, keys);
                let mut out: Vec<Value> = live
                    .iter()
                    .map(|item| {
                        match applied
                            .iter()
                            .find(|a| key(a).is_some() && key(a) == key(item))
                        {
                            Some(applied_item) => merge(Some(item), applied_item, item_child),
                            None => item.clone(),
                        }
                    })
                    .collect();
                for item in applied {
                    if key(item).is_none() || !live.iter().any(|l| key(l) == key(item)) {
                        out.push(merge(None, item, item_child));
                    }
                }
                Value::Array(out)
            }
        },
        (_, applied) => applied.clone(),
    }
}

/// Applies `applied` for `manager` (server-side apply) to `live` (`None`: the object is created).
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    resource: &ResourceInfo,
    now: &str,
) -> Result<ApplyOutcome, ApplyError> {
    if !applied.is_object() {
        return Err(invalid("the applied configuration must be a json object"));
    }
    if manager.is_empty() {
        return Err(invalid("fieldManager is required for apply requests"));
    }
    let ty = meta::root(resource);
    let api_version = resource.api_version();
    let mut applied = without_managed_fields(applied);
    drop_nulls(&mut applied);
    if let Some(object) = applied.as_object_mut() {
        object.remove("status");
    }
    let applied_fields = owned_fields(&applied, ty);
    let applier = Entry {
        manager: manager.to_owned(),
        operation: APPLY.to_owned(),
        api_version: api_version.clone(),
        time: Some(now.to_owned()),
        subresource: None,
        fields: applied_fields.clone(),
    };

    let Some(live) = live else {
        let mut object = applied;
        write_entries(&mut object, vec![applier]);
        return Ok(ApplyOutcome { object });
    };

    let plain_live = without_managed_fields(live);
    let mut entries = match managed_entries(live)? {
        Some(entries) => entries,
        // An object written before anyone tracked fields: one manager owns everything.
        None => vec![Entry {
            manager: BEFORE_FIRST_APPLY.to_owned(),
            operation: UPDATE.to_owned(),
            api_version: api_version.clone(),
            time: Some(now.to_owned()),
            subresource: None,
            fields: owned_fields(&plain_live, ty),
        }],
    };
    let root = Child {
        ty,
        meta: FieldMeta::UNKNOWN,
        declared: true,
    };
    let mut object = merge(Some(&plain_live), &applied, root);
    let (changed, _) = changes(Some(&plain_live), &object, ty);
    let changed = changed.intersection(&applied_fields);

    let mut conflicts = Vec::new();
    for entry in entries
        .iter_mut()
        .filter(|e| !e.is(manager, APPLY, &api_version))
    {
        let overlap = entry.fields.intersection(&changed);
        if overlap.is_empty() {
            continue;
        }
        if force {
            entry.fields = entry.fields.difference(&overlap);
        } else {
            conflicts.extend(overlap.paths().iter().map(|path| Conflict {
                manager: entry.display(),
                field: display_path(path),
            }));
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort();
        return Err(ApplyError::Conflicts(conflicts));
    }

    // Fields this manager applied before and no longer applies go, unless someone else owns them.
    let previous = entries
        .iter()
        .find(|e| e.is(manager, APPLY, &api_version))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for path in previous.difference(&applied_fields).paths() {
        let kept = applied_fields.touches(&path)
            || entries
                .iter()
                .filter(|e| !e.is(manager, APPLY, &api_version))
                .any(|e| e.fields.touches(&path));
        if !kept {
            remove_at(&mut object, &path, ty);
        }
    }

    match entries
        .iter_mut()
        .find(|e| e.is(manager, APPLY, &api_version))
    {
        Some(entry) => *entry = applier,
        None => entries.push(applier),
    }
    write_entries(&mut object, entries);
    Ok(ApplyOutcome { object })
}

/// Records an ordinary write (create, update, patch) by `manager` in `new`'s managedFields: the
/// manager owns every field it set or changed, other managers lose those fields, and fields the
/// write removed leave every set. `old` is `None` for a create.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    resource: &ResourceInfo,
    now: &str,
) -> Result<(), ApplyError> {
    let ty = meta::root(resource);
    let api_version = resource.api_version();
    let mut entries = match managed_entries(new)? {
        Some(entries) => entries,
        None => match old {
            Some(old) => managed_entries(old)?.unwrap_or_default(),
            None => Vec::new(),
        },
    };
    // managedFields itself is never owned (see STRIPPED), so the objects need no copy without it.
    let (changed, removed) = changes(old, new, ty);
    for entry in entries
        .iter_mut()
        .filter(|e| !e.is(manager, UPDATE, &api_version))
    {
        entry.fields = entry.fields.difference(&changed).difference(&removed);
    }
    let position = entries
        .iter()
        .position(|e| e.is(manager, UPDATE, &api_version));
    match position {
        Some(at) => {
            let entry = &mut entries[at];
            entry.fields.union(&changed);
            entry.fields = entry.fields.difference(&removed);
            if !changed.is_empty() {
                entry.time = Some(now.to_owned());
            }
        }
        None if !changed.is_empty() => entries.push(Entry {
            manager: manager.to_owned(),
            operation: UPDATE.to_owned(),
            api_version,
            time: Some(now.to_owned()),
            subresource: None,
            fields: changed,
        }),
        None => {}
    }
    write_entries(new, entries);
    Ok(())
}

#[cfg(test)]
mod tests;
