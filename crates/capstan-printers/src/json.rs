//! Lenient reads from user-supplied JSON: a missing, null or mistyped field reads as absent or as
//! its zero value, never as a panic.

use serde_json::Value;

/// The value at `path`; `None` when any step is missing or null.
pub(crate) fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

/// The string at `path`, `""` when absent or not a string.
pub(crate) fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    get(value, path).and_then(Value::as_str).unwrap_or("")
}

/// The string at `path` if present and a string (even if empty).
pub(crate) fn opt_str<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(value, path).and_then(Value::as_str)
}

/// The integer at `path`, 0 when absent or not an integer.
pub(crate) fn int_at(value: &Value, path: &[&str]) -> i64 {
    opt_int(value, path).unwrap_or(0)
}

/// The integer at `path` if present and an integer.
pub(crate) fn opt_int(value: &Value, path: &[&str]) -> Option<i64> {
    get(value, path).and_then(Value::as_i64)
}

/// The boolean at `path`, false when absent or not a boolean.
pub(crate) fn bool_at(value: &Value, path: &[&str]) -> bool {
    get(value, path).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `path`, empty when absent or not an array.
pub(crate) fn arr_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    get(value, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The number of entries of the object (map) at `path`, 0 when absent.
pub(crate) fn map_len(value: &Value, path: &[&str]) -> usize {
    get(value, path)
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len)
}

/// `metadata.name`.
pub(crate) fn name(object: &Value) -> &str {
    str_at(object, &["metadata", "name"])
}

/// An `IntOrString` as Kubernetes prints it (`2`, `50%`); `None` when absent.
pub(crate) fn int_or_string(value: &Value, path: &[&str]) -> Option<String> {
    match get(value, path)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A resource quantity as stored (`500m`, `1Gi`); numbers written bare print as numbers.
pub(crate) fn quantity(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_are_lenient() {
        let v =
            json!({"a": {"b": "x", "n": 3, "null": null, "list": [1], "map": {"k": 1}}, "s": 5});
        assert_eq!(str_at(&v, &["a", "b"]), "x");
        assert_eq!(str_at(&v, &["a", "n"]), "");
        assert_eq!(str_at(&v, &["s", "deeper"]), "");
        assert_eq!(int_at(&v, &["a", "n"]), 3);
        assert_eq!(int_at(&v, &["a", "b"]), 0);
        assert!(get(&v, &["a", "null"]).is_none());
        assert_eq!(arr_at(&v, &["a", "list"]).len(), 1);
        assert!(arr_at(&v, &["a", "map"]).is_empty());
        assert_eq!(map_len(&v, &["a", "map"]), 1);
        assert_eq!(map_len(&v, &["a", "list"]), 0);
        assert_eq!(
            int_or_string(&json!({"x": "50%"}), &["x"]).as_deref(),
            Some("50%")
        );
        assert_eq!(
            int_or_string(&json!({"x": 2}), &["x"]).as_deref(),
            Some("2")
        );
        assert_eq!(int_or_string(&json!({"x": true}), &["x"]), None);
    }
}
