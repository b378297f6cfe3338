//! Parsing a request path and query into what it addresses, as kube-apiserver's RequestInfo does.

use std::collections::HashMap;

/// What a resource request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// `""` for the core group (`/api/v1`).
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix was used.
    pub watch_path: bool,
}

/// What a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/api`: the legacy versions.
    CoreVersions,
    /// `/apis`: the group list.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resource list.
    Resources {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
    /// Anything else (health, version, openapi, metrics, unknown).
    Other,
}

/// Splits a URL path into its target.
pub fn parse_path(path: &str) -> Target {
    let parts: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(percent_decode)
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Target::CoreVersions,
        ["api", version] => {
            return Target::Resources {
                group: String::new(),
                version: (*version).into(),
            };
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis"] => return Target::Groups,
        ["apis", group] => return Target::Group((*group).into()),
        ["apis", group, version] => {
            return Target::Resources {
                group: (*group).into(),
                version: (*version).into(),
            };
        }
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Target::Other,
    };
    let (watch_path, mut rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let mut namespace = None;
    if let ["namespaces", ns, tail @ ..] = rest {
        namespace = Some((*ns).to_owned());
        // `namespaces/<name>/status` and `/finalize` are subresources of the namespace itself.
        if !tail.is_empty() && !matches!(tail[0], "status" | "finalize") {
            rest = tail;
        }
    }
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return Target::Other,
    };
    if resource.is_empty() {
        return Target::Other;
    }
    Target::Resource(ResourcePath {
        group: group.into(),
        version: version.into(),
        namespace,
        resource: resource.into(),
        name: name.map(Into::into),
        subresource: subresource.map(Into::into),
        watch_path,
    })
}

/// Decodes `%XX` escapes (and nothing else: `+` stays, as in a path).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Query parameters (`+` means space, as in forms). Later duplicates win, except that every value is
/// kept in `all` for the few parameters that repeat (`dryRun`).
#[derive(Debug, Default, Clone)]
pub struct Query {
    values: HashMap<String, String>,
    all: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let mut q = Query::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(&k.replace('+', " "));
            let v = percent_decode(&v.replace('+', " "));
            q.values.insert(k.clone(), v.clone());
            q.all.push((k, v));
        }
        q
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A boolean parameter: present as `true`/`1` (or with no value).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | ""))
    }

    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.all
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourcePath {
        match parse_path(path) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths() {
        let r = resource("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.group, "");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.resource, "pods");
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let r = resource("/apis/apps/v1/namespaces/kube-system/deployments");
        assert_eq!(
            (r.group.as_str(), r.resource.as_str(), r.name),
            ("apps", "deployments", None)
        );
    }

    #[test]
    fn namespace_objects_and_their_subresources() {
        let r = resource("/api/v1/namespaces/default");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref()),
            ("namespaces", Some("default"))
        );
        let r = resource("/api/v1/namespaces/default/finalize");
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_deref()),
            ("namespaces", Some("finalize"))
        );
        let r = resource("/api/v1/namespaces");
        assert_eq!((r.resource.as_str(), r.name), ("namespaces", None));
    }

    #[test]
    fn cluster_scoped_and_watch_paths() {
        let r = resource("/api/v1/nodes/n1");
        assert_eq!(
            (r.resource.as_str(), r.namespace, r.name.as_deref()),
            ("nodes", None, Some("n1"))
        );
        let r = resource("/api/v1/watch/namespaces/default/pods");
        assert!(r.watch_path);
        assert_eq!(r.resource, "pods");
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(parse_path("/api"), Target::CoreVersions);
        assert_eq!(parse_path("/apis"), Target::Groups);
        assert_eq!(parse_path("/apis/apps"), Target::Group("apps".into()));
        assert_eq!(
            parse_path("/apis/apps/v1"),
            Target::Resources {
                group: "apps".into(),
                version: "v1".into()
            }
        );
        assert_eq!(parse_path("/healthz"), Target::Other);
    }

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=true&dryRun=All&dryRun=All",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.all("dryRun").count(), 2);
    }
}
