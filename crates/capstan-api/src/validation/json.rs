//! Small readers over `serde_json::Value` that never panic: a missing or mistyped field reads as
//! absent (empty string, empty list), the way Go reads a zero value.

use serde_json::{Map, Value};

/// The field, unless absent or `null`.
pub(crate) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|f| !f.is_null())
}

pub(crate) fn opt_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A string field, `""` when absent (Go's zero value).
pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    opt_str(v, key).unwrap_or("")
}

pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(crate) fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

pub(crate) fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

pub(crate) fn boolean(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

/// The entries of a `map[string]string` field, sorted by key.
pub(crate) fn str_map<'a>(v: &'a Value, key: &str) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = obj(v, key)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// `metadata` of an object (or of a template), or `Null`.
pub(crate) fn meta(v: &Value) -> &Value {
    v.get("metadata").unwrap_or(&Value::Null)
}

/// Path helpers, rendering as `field.Path` does: `a.b`, `a[0]`, `a[key]`.
pub(crate) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(crate) fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

/// The `Value` at `pointer` made into an object (created, or replaced if not an object), for
/// defaulting. `None` only if a parent on the way is not an object.
pub(crate) fn ensure_obj<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let parent = v.as_object_mut()?;
    let entry = parent
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

/// Sets `key` to `value` when it is absent or `null`.
pub(crate) fn default_field(v: &mut Value, key: &str, value: Value) {
    if let Some(map) = v.as_object_mut() {
        match map.get(key) {
            Some(existing) if !existing.is_null() => {}
            _ => {
                map.insert(key.to_owned(), value);
            }
        }
    }
}

/// Sets a string field when it is absent, `null` or `""` (Go's zero value).
pub(crate) fn default_str(v: &mut Value, key: &str, value: &str) {
    if let Some(map) = v.as_object_mut() {
        let empty = match map.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if empty {
            map.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    }
}

/// Sets an integer field when it is absent, `null` or `0` (Go's zero value for non-pointers).
pub(crate) fn default_nonzero(v: &mut Value, key: &str, value: i64) {
    if let Some(map) = v.as_object_mut() {
        let empty = match map.get(key) {
            None | Some(Value::Null) => true,
            Some(n) => n.as_i64() == Some(0),
        };
        if empty {
            map.insert(key.to_owned(), Value::from(value));
        }
    }
}
