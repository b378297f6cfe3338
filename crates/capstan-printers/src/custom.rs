//! Tables of custom resources: `Name`, then the definition's `additionalPrinterColumns`, each cell
//! the first result of its JSONPath, typed as kube-apiserver's custom resource table convertor does.

use capstan_api::custom::{CustomResource, PrinterColumn};
use serde_json::{Value, json};

use crate::columns;
use crate::time::{self, Time};

/// The column definitions of a custom resource's table.
pub(crate) fn columns(custom: &CustomResource) -> Vec<Value> {
    let mut out = vec![columns::name().to_json()];
    out.extend(custom.columns.iter().map(|c| {
        json!({
            "name": c.name,
            "type": c.column_type,
            "format": c.format,
            "description": c.description,
            "priority": c.priority,
        })
    }));
    out
}

/// The cells of one object's row.
pub(crate) fn cells(custom: &CustomResource, object: &Value, now: Time) -> Vec<Value> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let mut out = vec![Value::from(name)];
    out.extend(custom.columns.iter().map(|c| cell(c, object, now)));
    out
}

fn cell(column: &PrinterColumn, object: &Value, now: Time) -> Value {
    let Some(value) = find(object, &column.json_path).filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match column.column_type.as_str() {
        "integer" => value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        "number" => value.as_f64().map_or(Value::Null, Value::from),
        "boolean" => value.as_bool().map_or(Value::Null, Value::from),
        "date" => match value.as_str() {
            Some(text) => Value::from(match Time::parse(text) {
                Some(t) => time::age(Some(t), now),
                None => "<invalid>".to_owned(),
            }),
            None => Value::Null,
        },
        _ => Value::from(match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    }
}

/// The first value a simple JSONPath selects: `.a.b`, `.a[0]`, `.a[?(@.type=="Ready")].status`,
/// with or without the surrounding `{}`.
pub(crate) fn find<'v>(object: &'v Value, path: &str) -> Option<&'v Value> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let mut at = object;
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            if !key.is_empty() {
                at = at.get(key)?;
            }
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = closing_bracket(after)?;
            let inner = &after[..end];
            at = index(at, inner)?;
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(at)
}

/// Where the `]` closing a bracket expression is, skipping quoted text.
fn closing_bracket(text: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

fn index<'v>(at: &'v Value, inner: &str) -> Option<&'v Value> {
    let inner = inner.trim();
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let (left, right) = filter.split_once("==")?;
        let key = left.trim().strip_prefix("@.")?;
        let want = right.trim().trim_matches(|c| c == '"' || c == '\'');
        return at.as_array()?.iter().find(|item| {
            find(item, &format!(".{key}")).is_some_and(|v| match v {
                Value::String(s) => s == want,
                other => serde_json::from_str::<Value>(want).ok().as_ref() == Some(other),
            })
        });
    }
    if let Some(key) = inner
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
    {
        return at.get(key);
    }
    let items = at.as_array()?;
    let i: i64 = inner.parse().ok()?;
    let i = if i < 0 { items.len() as i64 + i } else { i };
    items.get(usize::try_from(i).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_jsonpaths_select_fields_indexes_and_filtered_items() {
        let object = json!({
            "spec": {"replicas": 3, "names": ["a", "b"], "dotted.key": "x"},
            "status": {"conditions": [
                {"type": "Issuing", "status": "False"},
                {"type": "Ready", "status": "True"}
            ]}
        });
        assert_eq!(find(&object, ".spec.replicas"), Some(&json!(3)));
        assert_eq!(find(&object, "{.spec.names[1]}"), Some(&json!("b")));
        assert_eq!(find(&object, ".spec.names[-1]"), Some(&json!("b")));
        assert_eq!(find(&object, ".spec['dotted.key']"), Some(&json!("x")));
        assert_eq!(
            find(&object, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(&json!("True"))
        );
        assert_eq!(find(&object, ".spec.missing"), None);
        assert_eq!(find(&object, ".spec.names[5]"), None);
        assert_eq!(find(&object, "spec"), None);
    }

    #[test]
    fn cells_are_typed_as_their_columns_say() {
        let column = |name: &str, column_type: &str, path: &str| PrinterColumn {
            name: name.into(),
            column_type: column_type.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: path.into(),
        };
        let custom = CustomResource {
            definition: "crontabs.example.com".into(),
            storage_version: "v1".into(),
            status: false,
            scale: None,
            columns: vec![
                column("Spec", "string", ".spec.cronSpec"),
                column("Replicas", "integer", ".spec.replicas"),
                column("Ready", "boolean", ".status.ready"),
                column("Age", "date", ".metadata.creationTimestamp"),
                column("Missing", "string", ".spec.nothing"),
                column("Object", "string", ".spec.nested"),
            ],
            schema: None,
        };
        let object = json!({
            "metadata": {"name": "c1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"cronSpec": "* * * * */5", "replicas": 2.0, "nested": {"a": 1}},
            "status": {"ready": true}
        });
        let now = Time::parse("2026-01-01T00:01:30Z").expect("time");
        assert_eq!(
            Value::Array(cells(&custom, &object, now)),
            json!(["c1", "* * * * */5", 2, true, "90s", null, "{\"a\":1}"])
        );
        let names: Vec<Value> = columns(&custom).iter().map(|c| c["name"].clone()).collect();
        assert_eq!(
            names,
            vec![
                json!("Name"),
                json!("Spec"),
                json!("Replicas"),
                json!("Ready"),
                json!("Age"),
                json!("Missing"),
                json!("Object")
            ]
        );
    }
}
