//! Values printed the way Go's `%q` and `%#v` print them, since `field.Error` renders bad values
//! with those verbs (`map[string]string{"app":"web"}`, `v1.LabelSelector{...}`).

use serde_json::Value;

use super::json::{arr, str_map, str_of};

/// Go's `strconv.Quote`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `%#v` of a `map[string]string` field of `v` (`nil` when absent).
pub(crate) fn string_map(v: &Value, key: &str) -> String {
    if v.get(key).is_none_or(Value::is_null) {
        return "map[string]string(nil)".to_owned();
    }
    let entries: Vec<String> = str_map(v, key)
        .into_iter()
        .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
        .collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

/// `%#v` of a `[]string` field of `v`.
pub(crate) fn string_slice(v: &Value, key: &str) -> String {
    if v.get(key).is_none_or(Value::is_null) {
        return "[]string(nil)".to_owned();
    }
    let items: Vec<String> = arr(v, key)
        .iter()
        .map(|s| quote(s.as_str().unwrap_or("")))
        .collect();
    format!("[]string{{{}}}", items.join(", "))
}

/// `%#v` of a `*metav1.LabelSelector` (dereferenced, as `field.Error` does; `null` when nil).
pub(crate) fn label_selector(selector: Option<&Value>) -> String {
    let Some(sel) = selector.filter(|s| !s.is_null()) else {
        return "null".to_owned();
    };
    let expressions = if sel.get("matchExpressions").is_none_or(Value::is_null) {
        "[]v1.LabelSelectorRequirement(nil)".to_owned()
    } else {
        let items: Vec<String> = arr(sel, "matchExpressions")
            .iter()
            .map(|e| {
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                    quote(str_of(e, "key")),
                    quote(str_of(e, "operator")),
                    string_slice(e, "values")
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        string_map(sel, "matchLabels"),
        expressions
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_like_go() {
        assert_eq!(quote("a\"b\n"), "\"a\\\"b\\n\"");
        let v = json!({"labels": {"b": "2", "a": "1"}});
        assert_eq!(
            string_map(&v, "labels"),
            "map[string]string{\"a\":\"1\", \"b\":\"2\"}"
        );
        assert_eq!(string_map(&v, "none"), "map[string]string(nil)");
        assert_eq!(
            label_selector(Some(&json!({"matchLabels": {"app": "x"}}))),
            "v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
    }
}
