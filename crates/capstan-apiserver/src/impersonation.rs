//! User impersonation (`kubectl --as`, `--as-group`, `--as-uid`): the `Impersonate-*` headers, as
//! kube-apiserver reads them. The authenticated user must be allowed the `impersonate` verb on each
//! thing it asks to become — `users` (or `serviceaccounts` in their namespace), `groups`, `uids` and
//! `userextras/<key>` — and the request then runs as the impersonated user.

use hyper::HeaderMap;

use crate::{ApiError, Authorizer, User};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// One thing asked for, and the authorization attributes that allow it.
#[derive(Debug, PartialEq, Eq)]
struct Check {
    group: &'static str,
    resource: String,
    namespace: Option<String>,
    name: String,
}

impl Check {
    fn forbidden(&self, user: &User) -> ApiError {
        let qualified = if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let scope = match &self.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".into(),
        };
        ApiError::forbidden(format!(
            "{qualified} \"{}\" is forbidden: User \"{}\" cannot impersonate resource \"{}\" in API group \"{}\" {scope}",
            self.name, user.name, self.resource, self.group
        ))
    }
}

/// The identity the request runs as: `user` itself without `Impersonate-*` headers, else the
/// impersonated one when `user` may impersonate every part of it.
pub(crate) fn resolve(
    authorizer: &dyn Authorizer,
    user: User,
    headers: &HeaderMap,
) -> Result<User, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    let name = values(USER).into_iter().next();
    let groups = values(GROUP);
    let uid = values(UID).into_iter().next();
    let mut extras: Vec<(String, String)> = Vec::new();
    for (key, value) in headers {
        if let Some(extra) = key.as_str().strip_prefix(EXTRA_PREFIX)
            && let Ok(value) = value.to_str()
        {
            extras.push((unescape(extra), value.to_owned()));
        }
    }
    let Some(name) = name else {
        if groups.is_empty() && uid.is_none() && extras.is_empty() {
            return Ok(user);
        }
        return Err(ApiError::internal(
            "requested impersonation of groups, uid or extra without impersonating a user",
        ));
    };
    let service_account = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    let mut checks = vec![match service_account {
        Some((ns, sa)) => Check {
            group: "",
            resource: "serviceaccounts".into(),
            namespace: Some(ns.to_owned()),
            name: sa.to_owned(),
        },
        None => Check {
            group: "",
            resource: "users".into(),
            namespace: None,
            name: name.clone(),
        },
    }];
    checks.extend(groups.iter().map(|g| Check {
        group: "",
        resource: "groups".into(),
        namespace: None,
        name: g.clone(),
    }));
    checks.extend(uid.iter().map(|u| Check {
        group: "authentication.k8s.io",
        resource: "uids".into(),
        namespace: None,
        name: u.clone(),
    }));
    checks.extend(extras.iter().map(|(key, value)| Check {
        group: "authentication.k8s.io",
        resource: format!("userextras/{key}"),
        namespace: None,
        name: value.clone(),
    }));
    for check in &checks {
        if !authorizer.authorize(
            &user,
            "impersonate",
            check.group,
            &check.resource,
            check.namespace.as_deref(),
            Some(&check.name),
        ) {
            return Err(check.forbidden(&user));
        }
    }
    let mut groups = groups;
    // A service account's groups come with it when none are asked for, as kube-apiserver does.
    if let Some((ns, _)) = service_account
        && groups.is_empty()
    {
        groups = vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ];
    }
    if name == "system:anonymous" {
        if !groups.iter().any(|g| g == "system:unauthenticated") {
            groups.push("system:unauthenticated".into());
        }
        return Ok(User { name, groups });
    }
    Ok(User::new(name, groups))
}

/// Extra keys travel percent-encoded in header names (`acme.com%2Fproject`).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = key.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Allows what is listed (`resource/name` or `resource/namespace/name`) and records every ask.
    #[derive(Debug, Default)]
    struct Only {
        allowed: Vec<&'static str>,
        asked: Mutex<Vec<String>>,
    }

    impl Authorizer for Only {
        fn authorize(
            &self,
            _user: &User,
            verb: &str,
            group: &str,
            resource: &str,
            namespace: Option<&str>,
            name: Option<&str>,
        ) -> bool {
            assert_eq!(verb, "impersonate");
            let key = match namespace {
                Some(ns) => format!("{group}/{resource}/{ns}/{}", name.unwrap_or_default()),
                None => format!("{group}/{resource}/{}", name.unwrap_or_default()),
            };
            self.asked.lock().expect("lock").push(key.clone());
            self.allowed.contains(&key.as_str())
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        map
    }

    fn alice() -> User {
        User::new("alice", ["devs"])
    }

    #[test]
    fn no_headers_keep_the_authenticated_user() {
        let auth = Only::default();
        assert_eq!(
            resolve(&auth, alice(), &HeaderMap::new()).expect("user"),
            alice()
        );
        assert!(auth.asked.lock().expect("lock").is_empty());
    }

    #[test]
    fn a_permitted_user_and_groups_replace_the_identity() {
        let auth = Only {
            allowed: vec!["/users/jane", "/groups/ops", "/groups/dba"],
            ..Default::default()
        };
        let h = headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Group", "dba"),
        ]);
        let user = resolve(&auth, alice(), &h).expect("impersonated");
        assert_eq!(user.name, "jane");
        assert_eq!(user.groups, ["ops", "dba", "system:authenticated"]);
    }

    #[test]
    fn every_part_must_be_permitted() {
        let auth = Only {
            allowed: vec!["/users/jane"],
            ..Default::default()
        };
        let h = headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "system:masters"),
        ]);
        let err = resolve(&auth, alice(), &h).expect_err("group not permitted");
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "groups \"system:masters\" is forbidden: User \"alice\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope"
        );
    }

    #[test]
    fn service_accounts_are_checked_in_their_namespace_and_get_their_groups() {
        let auth = Only {
            allowed: vec!["/serviceaccounts/team/robot"],
            ..Default::default()
        };
        let h = headers(&[("Impersonate-User", "system:serviceaccount:team:robot")]);
        let user = resolve(&auth, alice(), &h).expect("impersonated");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );
        let h = headers(&[("Impersonate-User", "system:serviceaccount:other:robot")]);
        let err = resolve(&auth, alice(), &h).expect_err("other namespace");
        assert!(
            err.message.ends_with("in the namespace \"other\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn uid_and_extras_are_checked_too() {
        let auth = Only {
            allowed: vec!["/users/jane", "authentication.k8s.io/uids/42"],
            ..Default::default()
        };
        let h = headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Uid", "42"),
            ("Impersonate-Extra-acme.com%2Fproject", "p1"),
        ]);
        let err = resolve(&auth, alice(), &h).expect_err("extra not permitted");
        assert!(
            err.message.starts_with(
                "userextras/acme.com/project.authentication.k8s.io \"p1\" is forbidden"
            ),
            "{}",
            err.message
        );
    }

    #[test]
    fn groups_without_a_user_are_refused() {
        let auth = Only::default();
        let h = headers(&[("Impersonate-Group", "ops")]);
        assert_eq!(resolve(&auth, alice(), &h).expect_err("no user").code, 500);
    }
}
