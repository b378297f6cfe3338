//! Labels and label selectors printed the way `k8s.io/apimachinery/pkg/labels` prints them.

use serde_json::Value;

use crate::json::{arr_at, str_at};

/// `labels.FormatLabels`: `a=b,c=d` sorted by key, `<none>` when empty.
pub(crate) fn format_labels(map: Option<&Value>) -> String {
    let mut pairs: Vec<(&str, &str)> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_owned();
    }
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.LabelSelectorAsSelector(s).String()`: requirements sorted by key; an absent or empty
/// selector prints as `""`. `None` when the selector is invalid.
pub(crate) fn selector_string(selector: Option<&Value>) -> Option<String> {
    let Some(selector) = selector else {
        return Some(String::new());
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").filter(|v| !v.is_null()) {
        for (key, value) in labels.as_object()? {
            let value = value.as_str()?;
            if !valid_key(key) || !valid_value(value) {
                return None;
            }
            requirements.push((key.clone(), format!("{key}={value}")));
        }
    }
    for expression in arr_at(selector, &["matchExpressions"]) {
        let key = str_at(expression, &["key"]);
        let values = arr_at(expression, &["values"])
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<&str>>>()?;
        if !valid_key(key) {
            return None;
        }
        let rendered = match str_at(expression, &["operator"]) {
            op @ ("In" | "NotIn") => {
                if values.is_empty() || !values.iter().all(|v| valid_value(v)) {
                    return None;
                }
                let mut sorted = values.clone();
                sorted.sort_unstable();
                let word = if op == "In" { "in" } else { "notin" };
                format!("{key} {word} ({})", sorted.join(","))
            }
            "Exists" if values.is_empty() => key.to_owned(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key.to_owned(), rendered));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Some(
        requirements
            .into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// `metav1.FormatLabelSelector`: `<none>` when it selects nothing in particular, `<error>` when invalid.
pub(crate) fn format_label_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        Some(s) if s.is_empty() => "<none>".to_owned(),
        Some(s) => s,
        None => "<error>".to_owned(),
    }
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
fn valid_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && valid_value(name)
}

/// A label value: empty, or up to 63 characters of `[A-Za-z0-9._-]` starting and ending alphanumeric.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    value.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_label_maps_sorted_by_key() {
        assert_eq!(
            format_labels(Some(&json!({"b": "2", "a": "1", "a.b": "3"}))),
            "a=1,a.b=3,b=2"
        );
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn formats_selectors_like_apimachinery() {
        let cases = [
            (
                json!({"matchLabels": {"app": "web", "tier": "fe"}}),
                "app=web,tier=fe",
            ),
            (
                json!({"matchLabels": {"z": "1"}, "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                    {"key": "gpu", "operator": "Exists"},
                    {"key": "arch", "operator": "NotIn", "values": ["arm"]},
                    {"key": "old", "operator": "DoesNotExist"}]}),
                "arch notin (arm),env in (dev,prod),gpu,!old,z=1",
            ),
            (json!({}), "<none>"),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}),
                "<error>",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "<error>",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "<error>",
            ),
            (json!({"matchLabels": {"bad key": "x"}}), "<error>"),
            (json!({"matchLabels": {"example.com/app": "-x"}}), "<error>"),
            (
                json!({"matchLabels": {"example.com/app": "x"}}),
                "example.com/app=x",
            ),
        ];
        for (selector, want) in cases {
            assert_eq!(format_label_selector(Some(&selector)), want, "{selector}");
        }
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(selector_string(None).as_deref(), Some(""));
    }
}
