//! Label and field selectors, with the syntax and matching rules of Kubernetes.

use std::collections::BTreeMap;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelReq>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            reqs.push(parse_label_term(term)?);
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|req| match req {
            LabelReq::Equals(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn parse_label_term(term: &str) -> Result<LabelReq, String> {
    let invalid = || {
        format!(
            "unable to parse requirement: found '{term}', expected: key, !key, key=value, key!=value, key in (values), key notin (values)"
        )
    };
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelReq::NotExists(check_key(key.trim(), term)?));
    }
    for (op, make) in [("!=", 0), ("==", 1), ("=", 1)] {
        if let Some((k, v)) = term.split_once(op) {
            let key = check_key(k.trim(), term)?;
            let value = v.trim().to_owned();
            return Ok(if make == 0 {
                LabelReq::NotEquals(key, value)
            } else {
                LabelReq::Equals(key, value)
            });
        }
    }
    for (op, negate) in [(" notin ", true), (" in ", false)] {
        if let Some((k, v)) = term.split_once(op) {
            let key = check_key(k.trim(), term)?;
            let v = v.trim();
            let inner = v
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(invalid)?;
            let values: Vec<String> = inner
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            if values.is_empty() {
                return Err(format!(
                    "for '{op}', 'notin' operators, values set can't be empty",
                    op = op.trim()
                ));
            }
            return Ok(if negate {
                LabelReq::NotIn(key, values)
            } else {
                LabelReq::In(key, values)
            });
        }
    }
    if term.contains(' ') || term.contains('(') {
        return Err(invalid());
    }
    Ok(LabelReq::Exists(check_key(term, term)?))
}

fn check_key(key: &str, term: &str) -> Result<String, String> {
    if key.is_empty() || key.contains(|c: char| c.is_whitespace() || "()!=,".contains(c)) {
        return Err(format!(
            "unable to parse requirement: invalid label key \"{key}\" in '{term}'"
        ));
    }
    Ok(key.to_owned())
}

/// A parsed `fieldSelector`: `field=value`, `field==value`, `field!=value`, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                ));
            };
            reqs.push((field.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields this selector reads, to check them against what a resource supports.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(f, _, _)| f.as_str())
    }

    /// Matches against `get(field)`; a field the object lacks reads as the empty string.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = get(field).unwrap_or_default();
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        for (selector, expected) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("app in (db, web)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("missing notin (x)", true),
            ("app=web,tier in (front,back)", true),
            ("app=web,missing", false),
        ] {
            let s = LabelSelector::parse(selector).expect(selector);
            assert_eq!(s.matches(&l), expected, "{selector}");
        }
    }

    #[test]
    fn bad_label_selectors_are_errors() {
        for bad in ["app in web", "a b", "=x", "app in ()"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors() {
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").expect("parses");
        let get = |f: &str| match f {
            "spec.nodeName" => Some("n1".to_owned()),
            "status.phase" => Some("Running".to_owned()),
            _ => None,
        };
        assert!(s.matches(get));
        let unscheduled = FieldSelector::parse("spec.nodeName=").expect("parses");
        assert!(unscheduled.matches(|_| None));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
