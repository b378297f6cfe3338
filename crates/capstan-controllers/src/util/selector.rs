//! `metav1.LabelSelector` matching (matchLabels and the set-based matchExpressions), as
//! `metav1.LabelSelectorAsSelector` evaluates them. A missing selector matches nothing; an empty one
//! matches everything.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` satisfy `selector`. Unknown operators match nothing, as an invalid selector would.
pub(crate) fn matches(
    selector: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|req| {
            let values = req.values.as_deref().unwrap_or_default();
            let value = labels.get(&req.key);
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether the selector selects every object (no requirements at all).
pub(crate) fn is_empty(selector: Option<&LabelSelector>) -> bool {
    selector.is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn selector_cases() {
        let app_web = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: None,
        };
        let exprs = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                req("tier", "In", &["a", "b"]),
                req("env", "NotIn", &["prod"]),
                req("team", "Exists", &[]),
                req("legacy", "DoesNotExist", &[]),
            ]),
        };
        // (selector, pod labels, matches)
        let cases = [
            (&app_web, vec![("app", "web")], true),
            (&app_web, vec![("app", "web"), ("x", "y")], true),
            (&app_web, vec![("app", "db")], false),
            (&app_web, vec![], false),
            (&exprs, vec![("tier", "a"), ("team", "t")], true),
            (&exprs, vec![("tier", "c"), ("team", "t")], false),
            (
                &exprs,
                vec![("tier", "b"), ("team", "t"), ("env", "prod")],
                false,
            ),
            (
                &exprs,
                vec![("tier", "b"), ("team", "t"), ("env", "dev")],
                true,
            ),
            (&exprs, vec![("tier", "b")], false),
            (
                &exprs,
                vec![("tier", "b"), ("team", "t"), ("legacy", "1")],
                false,
            ),
        ];
        for (selector, pod, want) in cases {
            assert_eq!(
                matches(Some(selector), Some(&labels(&pod))),
                want,
                "{selector:?} vs {pod:?}"
            );
        }
        assert!(!matches(None, Some(&labels(&[("app", "web")]))));
        assert!(matches(Some(&LabelSelector::default()), None));
        assert!(is_empty(Some(&LabelSelector::default())));
        assert!(!is_empty(Some(&app_web)));
    }
}
