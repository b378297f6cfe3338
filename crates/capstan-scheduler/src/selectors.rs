//! Matching rules shared by plugins: node selector terms (node affinity), label selectors (pod
//! affinity) and taint tolerations, with the semantics of `k8s.io/component-helpers`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One `matchExpressions` entry of a node selector term.
pub fn node_requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(bound)) if op == "Gt" => v > bound,
                (Ok(v), Ok(bound)) => v < bound,
                _ => false,
            }
        }
        _ => false,
    }
}

/// A term matches when all its expressions and fields do; an empty term matches nothing.
pub fn node_term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| node_requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && node_requirement_matches(r, Some(node_name)))
}

/// Terms are ORed.
pub fn node_selector_matches(
    selector: &NodeSelector,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| node_term_matches(t, node_name, labels))
}

/// A label selector as used by pod affinity terms: `None` matches nothing, `{}` everything.
pub fn label_selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    let match_labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    match_labels_ok
        && selector.match_expressions.iter().flatten().all(|r| {
            let value = labels.get(&r.key);
            let values = r.values.as_deref().unwrap_or_default();
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// kube's `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn node_requirements() {
        let l = labels(&[("zone", "a"), ("cores", "16")]);
        let cases = [
            (
                json!({"key": "zone", "operator": "In", "values": ["a", "b"]}),
                true,
            ),
            (
                json!({"key": "zone", "operator": "In", "values": ["b"]}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "NotIn", "values": ["b"]}),
                true,
            ),
            (
                json!({"key": "absent", "operator": "NotIn", "values": ["b"]}),
                true,
            ),
            (json!({"key": "zone", "operator": "Exists"}), true),
            (json!({"key": "zone", "operator": "DoesNotExist"}), false),
            (json!({"key": "absent", "operator": "DoesNotExist"}), true),
            (
                json!({"key": "cores", "operator": "Gt", "values": ["8"]}),
                true,
            ),
            (
                json!({"key": "cores", "operator": "Lt", "values": ["8"]}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "Gt", "values": ["8"]}),
                false,
            ),
            (
                json!({"key": "cores", "operator": "Gt", "values": ["8", "9"]}),
                false,
            ),
        ];
        for (req, want) in cases {
            let r: NodeSelectorRequirement = serde_json::from_value(req.clone()).expect("req");
            assert_eq!(
                node_requirement_matches(&r, l.get(&r.key).map(String::as_str)),
                want,
                "{req}"
            );
        }
    }

    #[test]
    fn node_terms_are_anded_inside_and_ored_across() {
        let sel: NodeSelector = serde_json::from_value(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]},
                                  {"key": "disk", "operator": "Exists"}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}
        ]}))
        .expect("selector");
        assert!(node_selector_matches(
            &sel,
            "n1",
            &labels(&[("zone", "a"), ("disk", "ssd")])
        ));
        assert!(!node_selector_matches(
            &sel,
            "n1",
            &labels(&[("zone", "a")])
        ));
        assert!(node_selector_matches(&sel, "n9", &labels(&[])));
        let empty: NodeSelector =
            serde_json::from_value(json!({"nodeSelectorTerms": [{}]})).expect("selector");
        assert!(!node_selector_matches(&empty, "n1", &labels(&[])));
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let sel =
            |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).expect("sel") };
        assert!(label_selector_matches(Some(&sel(json!({}))), &l));
        assert!(!label_selector_matches(None, &l));
        assert!(label_selector_matches(
            Some(&sel(json!({"matchLabels": {"app": "web"}}))),
            &l
        ));
        assert!(!label_selector_matches(
            Some(&sel(json!({"matchLabels": {"app": "db"}}))),
            &l
        ));
        assert!(label_selector_matches(
            Some(&sel(
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["back"]}]})
            )),
            &l
        ));
        assert!(!label_selector_matches(
            Some(&sel(
                json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]})
            )),
            &l
        ));
    }

    #[test]
    fn tolerations() {
        let taint: Taint =
            serde_json::from_value(json!({"key": "k", "value": "v", "effect": "NoSchedule"}))
                .expect("taint");
        let cases = [
            (
                json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "k", "value": "v"}), true),
            (json!({"key": "k", "value": "other"}), false),
            (json!({"key": "k", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (
                json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
                false,
            ),
            (json!({"key": "x", "operator": "Exists"}), false),
        ];
        for (t, want) in cases {
            let tol: Toleration = serde_json::from_value(t.clone()).expect("toleration");
            assert_eq!(tolerates(&tol, &taint), want, "{t}");
        }
    }
}
