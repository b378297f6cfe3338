//! RFC 6902 JSON patch (`kubectl patch --type=json`).
//!
//! A patch that does not decode (not a list, unknown op, missing `path`/`value`/`from`) is malformed
//! (400); an operation that does not apply (missing key, index out of range, failed `test`) cannot
//! be applied (kube-apiserver answers 422).

use serde_json::{Map, Value};

use crate::PatchError;

#[derive(Debug)]
enum Op {
    Add {
        path: Vec<String>,
        value: Value,
    },
    Remove {
        path: Vec<String>,
    },
    Replace {
        path: Vec<String>,
        value: Value,
    },
    Move {
        from: Vec<String>,
        path: Vec<String>,
    },
    Copy {
        from: Vec<String>,
        path: Vec<String>,
    },
    Test {
        path: Vec<String>,
        value: Value,
    },
}

/// Applies an RFC 6902 JSON patch to `doc`.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(operations) = patch else {
        return Err(PatchError::malformed(
            "json patch must be a list of operations",
        ));
    };
    let operations = operations
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?;
    let mut doc = doc.clone();
    for op in operations {
        apply(&mut doc, op)?;
    }
    Ok(doc)
}

fn decode(op: &Value) -> Result<Op, PatchError> {
    let Value::Object(op) = op else {
        return Err(PatchError::malformed(
            "json patch operation must be an object",
        ));
    };
    let pointer = |field: &str| -> Result<Vec<String>, PatchError> {
        match op.get(field) {
            Some(Value::String(pointer)) => parse_pointer(pointer),
            _ => Err(PatchError::malformed(format!(
                "json patch operation is missing {field:?}"
            ))),
        }
    };
    let value = || -> Result<Value, PatchError> {
        op.get("value")
            .cloned()
            .ok_or_else(|| PatchError::malformed("json patch operation is missing \"value\""))
    };
    match op.get("op").and_then(Value::as_str) {
        Some("add") => Ok(Op::Add {
            path: pointer("path")?,
            value: value()?,
        }),
        Some("remove") => Ok(Op::Remove {
            path: pointer("path")?,
        }),
        Some("replace") => Ok(Op::Replace {
            path: pointer("path")?,
            value: value()?,
        }),
        Some("move") => Ok(Op::Move {
            from: pointer("from")?,
            path: pointer("path")?,
        }),
        Some("copy") => Ok(Op::Copy {
            from: pointer("from")?,
            path: pointer("path")?,
        }),
        Some("test") => Ok(Op::Test {
            path: pointer("path")?,
            value: value()?,
        }),
        Some(other) => Err(PatchError::malformed(format!(
            "unexpected json patch operation {other:?}"
        ))),
        None => Err(PatchError::malformed(
            "json patch operation is missing \"op\"",
        )),
    }
}

fn parse_pointer(pointer: &str) -> Result<Vec<String>, PatchError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(PatchError::malformed(format!(
            "json pointer {pointer:?} must start with \"/\""
        )));
    };
    Ok(rest
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn display(path: &[String]) -> String {
    path.iter()
        .map(|token| format!("/{}", token.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn missing(op: &str, path: &[String]) -> PatchError {
    PatchError::cannot_apply(format!(
        "{op} operation does not apply: doc is missing path: \"{}\"",
        display(path)
    ))
}

/// An array index token: digits without leading zeros.
fn index(token: &str) -> Option<usize> {
    if token.is_empty()
        || (token.len() > 1 && token.starts_with('0'))
        || !token.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    token.parse().ok()
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |node, token| match node {
        Value::Object(map) => map.get(token),
        Value::Array(list) => index(token).and_then(|i| list.get(i)),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |node, token| match node {
        Value::Object(map) => map.get_mut(token),
        Value::Array(list) => index(token).and_then(|i| list.get_mut(i)),
        _ => None,
    })
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), PatchError> {
    let Some((last, parent)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent) {
        Some(Value::Object(map)) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Some(Value::Array(list)) => {
            let at = if last == "-" {
                Some(list.len())
            } else {
                index(last)
            };
            match at {
                Some(at) if at <= list.len() => {
                    list.insert(at, value);
                    Ok(())
                }
                _ => Err(PatchError::cannot_apply(format!(
                    "add operation does not apply: index out of range: \"{}\"",
                    display(path)
                ))),
            }
        }
        _ => Err(missing("add", path)),
    }
}

fn remove(doc: &mut Value, path: &[String], op: &str) -> Result<Value, PatchError> {
    let Some((last, parent)) = path.split_last() else {
        return Ok(std::mem::replace(doc, Value::Object(Map::new())));
    };
    let removed = match get_mut(doc, parent) {
        Some(Value::Object(map)) => map.remove(last),
        Some(Value::Array(list)) => match index(last) {
            Some(at) if at < list.len() => Some(list.remove(at)),
            _ => None,
        },
        _ => None,
    };
    removed.ok_or_else(|| missing(op, path))
}

fn apply(doc: &mut Value, op: Op) -> Result<(), PatchError> {
    match op {
        Op::Add { path, value } => add(doc, &path, value),
        Op::Remove { path } => remove(doc, &path, "remove").map(drop),
        Op::Replace { path, value } => {
            let target = get_mut(doc, &path).ok_or_else(|| missing("replace", &path))?;
            *target = value;
            Ok(())
        }
        Op::Move { from, path } => {
            if path.len() > from.len() && path.starts_with(&from) {
                return Err(PatchError::cannot_apply(format!(
                    "move operation does not apply: \"{}\" is a child of \"{}\"",
                    display(&path),
                    display(&from)
                )));
            }
            let value = remove(doc, &from, "move")?;
            add(doc, &path, value)
        }
        Op::Copy { from, path } => {
            let value = get(doc, &from)
                .cloned()
                .ok_or_else(|| missing("copy", &from))?;
            add(doc, &path, value)
        }
        Op::Test { path, value } => match get(doc, &path) {
            Some(actual) if *actual == value => Ok(()),
            Some(_) => Err(PatchError::cannot_apply(format!(
                "testing value {} failed: test failed",
                display(&path)
            ))),
            None => Err(missing("test", &path)),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(doc: Value, patch: Value, expected: Value) {
        assert_eq!(
            json_patch(&doc, &patch).expect("patch applies"),
            expected,
            "patch {patch}"
        );
    }

    fn check_err(doc: Value, patch: Value, bad_request: bool) {
        let err = json_patch(&doc, &patch).expect_err("patch must fail");
        assert_eq!(err.is_bad_request(), bad_request, "{err}");
    }

    #[test]
    fn operations() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"args": ["x", "y"]}});
        let cases = [
            (
                json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"}]),
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"args": ["x", "y"]}}),
            ),
            (
                json!([{"op": "add", "path": "/spec/args/-", "value": "z"}]),
                json!({"metadata": {"labels": {"a": "1"}}, "spec": {"args": ["x", "y", "z"]}}),
            ),
            (
                json!([{"op": "add", "path": "/spec/args/0", "value": "w"}]),
                json!({"metadata": {"labels": {"a": "1"}}, "spec": {"args": ["w", "x", "y"]}}),
            ),
            (
                json!([{"op": "remove", "path": "/spec/args/1"}]),
                json!({"metadata": {"labels": {"a": "1"}}, "spec": {"args": ["x"]}}),
            ),
            (
                json!([{"op": "replace", "path": "/metadata/labels/a", "value": "9"}]),
                json!({"metadata": {"labels": {"a": "9"}}, "spec": {"args": ["x", "y"]}}),
            ),
            (
                json!([{"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/c"}]),
                json!({"metadata": {"labels": {"c": "1"}}, "spec": {"args": ["x", "y"]}}),
            ),
            (
                json!([{"op": "copy", "from": "/spec/args/0", "path": "/spec/args/-"}]),
                json!({"metadata": {"labels": {"a": "1"}}, "spec": {"args": ["x", "y", "x"]}}),
            ),
            (
                json!([{"op": "test", "path": "/spec/args/1", "value": "y"},
                    {"op": "replace", "path": "/spec/args", "value": []}]),
                json!({"metadata": {"labels": {"a": "1"}}, "spec": {"args": []}}),
            ),
            (
                json!([{"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c"}},
                    {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "d"}]),
                json!({"metadata": {"labels": {"a": "1"}, "annotations": {"a/b": "d"}}, "spec": {"args": ["x", "y"]}}),
            ),
            (json!([]), doc.clone()),
        ];
        for (patch, expected) in cases {
            check(doc.clone(), patch, expected);
        }
    }

    #[test]
    fn failures_are_classified() {
        let doc = json!({"spec": {"replicas": 1, "args": ["x"]}});
        // Cannot apply: 422.
        check_err(
            doc.clone(),
            json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
            false,
        );
        check_err(
            doc.clone(),
            json!([{"op": "remove", "path": "/spec/missing"}]),
            false,
        );
        check_err(
            doc.clone(),
            json!([{"op": "replace", "path": "/spec/missing", "value": 1}]),
            false,
        );
        check_err(
            doc.clone(),
            json!([{"op": "add", "path": "/spec/args/5", "value": "y"}]),
            false,
        );
        check_err(
            doc.clone(),
            json!([{"op": "add", "path": "/nope/x", "value": 1}]),
            false,
        );
        check_err(
            doc.clone(),
            json!([{"op": "move", "from": "/spec", "path": "/spec/inner"}]),
            false,
        );
        // Malformed: 400.
        check_err(doc.clone(), json!({"op": "add"}), true);
        check_err(
            doc.clone(),
            json!([{"op": "frobnicate", "path": "/spec"}]),
            true,
        );
        check_err(doc.clone(), json!([{"op": "add", "path": "/spec/x"}]), true);
        check_err(
            doc.clone(),
            json!([{"op": "add", "path": "spec", "value": 1}]),
            true,
        );
        check_err(doc, json!([{"op": "copy", "path": "/spec/x"}]), true);
    }
}
