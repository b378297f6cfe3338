//! RBAC authorization (rbac.authorization.k8s.io/v1) over the watch cache: a request is allowed when
//! a ClusterRoleBinding, or a RoleBinding in the request's namespace, binds one of the user's names
//! (user, group, service account) to a role with a rule covering verb, API group, resource (with
//! subresource) and, when the rule lists them, the object's name. The `system:masters` group is
//! always allowed, as kube-apiserver's privileged-group authorizer does. ClusterRoles with an
//! `aggregationRule` also carry the rules of the ClusterRoles their selectors pick (what the
//! clusterrole-aggregation controller writes into them on Kubernetes).
//!
//! The index of roles and bindings is rebuilt from the cache when one of the four resources
//! changed since the last request (compared by the revision each resource cache last applied), so a
//! request costs a few map lookups and a scan of the user's bindings.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use capstan_store::Revision;
use serde_json::Value;

use crate::cache::WatchCache;
use crate::{Authorizer, User};

const GROUP: &str = "rbac.authorization.k8s.io";
const MASTERS: &str = "system:masters";

/// One `PolicyRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rule {
    verbs: Vec<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    urls: Vec<String>,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    fn parse(value: &Value) -> Self {
        Self {
            verbs: strings(&value["verbs"]),
            groups: strings(&value["apiGroups"]),
            resources: strings(&value["resources"]),
            names: strings(&value["resourceNames"]),
            urls: strings(&value["nonResourceURLs"]),
        }
    }

    /// Whether this rule allows `verb` on the non-resource path `url` (`/healthz`, `/api/*`).
    fn allows_url(&self, verb: &str, url: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
            && self.urls.iter().any(|u| {
                u == "*"
                    || u == url
                    || (u.ends_with('*') && url != "*" && url.starts_with(&u[..u.len() - 1]))
            })
    }

    /// kube-apiserver's compact form, as escalation errors list rules.
    fn compact(&self) -> String {
        let list = |name: &str, items: &[String]| {
            if items.is_empty() {
                None
            } else {
                let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
                Some(format!("{name}:[{}]", quoted.join(", ")))
            }
        };
        let parts: Vec<String> = [
            list("APIGroups", &self.groups),
            list("Resources", &self.resources),
            list("ResourceNames", &self.names),
            list("NonResourceURLs", &self.urls),
            list("Verbs", &self.verbs),
        ]
        .into_iter()
        .flatten()
        .collect();
        format!("{{{}}}", parts.join(", "))
    }

    /// Whether this rule allows `verb` on `resource` (`plural` or `plural/subresource`).
    fn allows(&self, verb: &str, group: &str, resource: &str, name: Option<&str>) -> bool {
        let any = |list: &[String], item: &str| list.iter().any(|x| x == "*" || x == item);
        if !any(&self.verbs, verb) || !any(&self.groups, group) {
            return false;
        }
        let subresource = resource.split_once('/').map(|(_, sub)| sub);
        let resource_ok = self.resources.iter().any(|r| {
            r == "*"
                || r == resource
                || subresource.is_some_and(|sub| r.strip_prefix("*/") == Some(sub))
        });
        if !resource_ok {
            return false;
        }
        self.names.is_empty() || name.is_some_and(|n| self.names.iter().any(|x| x == n))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    User(String),
    Group(String),
    /// `system:serviceaccount:<namespace>:<name>`.
    ServiceAccount(String),
}

impl Subject {
    fn parse(value: &Value, binding_namespace: Option<&str>) -> Option<Self> {
        let name = value["name"].as_str()?.to_owned();
        match value["kind"].as_str()? {
            "User" => Some(Self::User(name)),
            "Group" => Some(Self::Group(name)),
            "ServiceAccount" => {
                let ns = value["namespace"].as_str().or(binding_namespace)?;
                Some(Self::ServiceAccount(format!(
                    "system:serviceaccount:{ns}:{name}"
                )))
            }
            _ => None,
        }
    }

    fn matches(&self, user: &User) -> bool {
        match self {
            Self::User(name) | Self::ServiceAccount(name) => *name == user.name,
            Self::Group(group) => user.groups.iter().any(|g| g == group),
        }
    }
}

#[derive(Debug, Clone)]
struct Binding {
    subjects: Vec<Subject>,
    /// `roleRef.kind == "ClusterRole"`.
    cluster_role: bool,
    role: String,
}

impl Binding {
    fn parse(value: &Value) -> Option<Self> {
        let namespace = value["metadata"]["namespace"].as_str();
        let role_ref = &value["roleRef"];
        Some(Self {
            subjects: value["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| Subject::parse(s, namespace))
                .collect(),
            cluster_role: role_ref["kind"].as_str()? == "ClusterRole",
            role: role_ref["name"].as_str()?.to_owned(),
        })
    }
}

/// Roles and bindings, ready for lookups.
#[derive(Debug, Default)]
pub(crate) struct Index {
    cluster_roles: HashMap<String, Vec<Rule>>,
    roles: HashMap<(String, String), Vec<Rule>>,
    cluster_bindings: Vec<Binding>,
    bindings: HashMap<String, Vec<Binding>>,
}

/// Whether `labels` satisfy a `LabelSelector` (matchLabels and matchExpressions).
fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |key: &str| labels[key].as_str();
    let labels_ok = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let expressions_ok = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values = strings(&e["values"]);
            let value = label(key);
            match e["operator"].as_str() {
                Some("In") => value.is_some_and(|v| values.iter().any(|x| x == v)),
                Some("NotIn") => value.is_none_or(|v| values.iter().all(|x| x != v)),
                Some("Exists") => value.is_some(),
                Some("DoesNotExist") => value.is_none(),
                _ => false,
            }
        });
    labels_ok && expressions_ok
}

impl Index {
    /// Builds the index from the four kinds' objects.
    pub(crate) fn build(
        cluster_roles: &[Value],
        roles: &[Value],
        cluster_bindings: &[Value],
        bindings: &[Value],
    ) -> Self {
        let rules_of = |role: &Value| -> Vec<Rule> {
            role["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Rule::parse)
                .collect()
        };
        let mut index = Index::default();
        for role in cluster_roles {
            let Some(name) = role["metadata"]["name"].as_str() else {
                continue;
            };
            let mut rules = rules_of(role);
            if let Some(selectors) = role["aggregationRule"]["clusterRoleSelectors"].as_array() {
                for other in cluster_roles {
                    let labels = &other["metadata"]["labels"];
                    if other["metadata"]["name"].as_str() != Some(name)
                        && selectors.iter().any(|s| selects(s, labels))
                    {
                        for rule in rules_of(other) {
                            if !rules.contains(&rule) {
                                rules.push(rule);
                            }
                        }
                    }
                }
            }
            index.cluster_roles.insert(name.to_owned(), rules);
        }
        for role in roles {
            let meta = &role["metadata"];
            if let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) {
                index
                    .roles
                    .insert((ns.to_owned(), name.to_owned()), rules_of(role));
            }
        }
        index.cluster_bindings = cluster_bindings
            .iter()
            .filter_map(Binding::parse)
            .filter(|b| b.cluster_role)
            .collect();
        for binding in bindings {
            if let (Some(ns), Some(parsed)) = (
                binding["metadata"]["namespace"].as_str(),
                Binding::parse(binding),
            ) {
                index
                    .bindings
                    .entry(ns.to_owned())
                    .or_default()
                    .push(parsed);
            }
        }
        index
    }

    /// Every rule bound to `user` cluster-wide or in `namespace` (duplicates dropped).
    fn rules_of(&self, user: &User, namespace: &str) -> Vec<&Rule> {
        let mut out: Vec<&Rule> = Vec::new();
        let bound = |b: &&Binding| b.subjects.iter().any(|s| s.matches(user));
        let cluster = self
            .cluster_bindings
            .iter()
            .filter(bound)
            .flat_map(|b| self.rules(b, None));
        let local = self
            .bindings
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(bound)
            .flat_map(|b| self.rules(b, Some(namespace)));
        for rule in cluster.chain(local) {
            if !out.contains(&rule) {
                out.push(rule);
            }
        }
        out
    }

    /// Whether the user's own rules cover every permission `rule` grants, in `namespace` (or
    /// cluster-wide): each verb, group, resource and name combination must be allowed by one rule
    /// the user holds (a `*` only by a `*`).
    fn covers(&self, user: &User, namespace: Option<&str>, rule: &Rule) -> bool {
        let names: Vec<Option<&str>> = if rule.names.is_empty() {
            vec![None]
        } else {
            rule.names.iter().map(|n| Some(n.as_str())).collect()
        };
        let resources_ok = rule.verbs.iter().all(|verb| {
            rule.groups.iter().all(|group| {
                rule.resources.iter().all(|resource| {
                    names
                        .iter()
                        .all(|name| self.allows(user, verb, group, resource, namespace, *name))
                })
            })
        });
        let urls_ok = rule.urls.iter().all(|url| {
            rule.verbs.iter().all(|verb| {
                self.cluster_bindings.iter().any(|b| {
                    b.subjects.iter().any(|s| s.matches(user))
                        && self.rules(b, None).iter().any(|r| r.allows_url(verb, url))
                })
            })
        });
        resources_ok && urls_ok
    }

    fn rules(&self, binding: &Binding, namespace: Option<&str>) -> &[Rule] {
        let rules = if binding.cluster_role {
            self.cluster_roles.get(&binding.role)
        } else {
            namespace.and_then(|ns| self.roles.get(&(ns.to_owned(), binding.role.clone())))
        };
        rules.map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether the bindings allow the request (without the `system:masters` shortcut).
    pub(crate) fn allows(
        &self,
        user: &User,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        let covers = |binding: &Binding, ns: Option<&str>| {
            binding.subjects.iter().any(|s| s.matches(user))
                && self
                    .rules(binding, ns)
                    .iter()
                    .any(|r| r.allows(verb, group, resource, name))
        };
        if self.cluster_bindings.iter().any(|b| covers(b, None)) {
            return true;
        }
        namespace.is_some_and(|ns| {
            self.bindings
                .get(ns)
                .is_some_and(|list| list.iter().any(|b| covers(b, Some(ns))))
        })
    }
}

/// The RBAC authorizer; it reads roles and bindings from the API server's watch cache, which the
/// server hands it when it starts ([`Authorizer::attach`]).
#[derive(Debug, Default)]
pub struct RbacAuthorizer {
    cache: OnceLock<Arc<WatchCache>>,
    index: RwLock<Option<([Revision; 4], Arc<Index>)>>,
}

const KINDS: [&str; 4] = [
    "clusterroles",
    "roles",
    "clusterrolebindings",
    "rolebindings",
];

impl RbacAuthorizer {
    pub fn new() -> Self {
        Self::default()
    }

    fn index(&self) -> Arc<Index> {
        let Some(cache) = self.cache.get() else {
            return Arc::new(Index::default());
        };
        let resources = KINDS.map(|plural| capstan_api::find(GROUP, "v1", plural));
        let stamp = resources.map(|r| r.map(|r| cache.applied(r)).unwrap_or(0));
        if let Some((at, index)) = self
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && *at == stamp
        {
            return index.clone();
        }
        let objects = resources.map(|r| {
            r.map(|r| {
                cache
                    .list(r, None, None, |_| true, None)
                    .0
                    .iter()
                    .map(|o| o.value())
                    .collect::<Vec<Value>>()
            })
            .unwrap_or_default()
        });
        let index = Arc::new(Index::build(
            &objects[0],
            &objects[1],
            &objects[2],
            &objects[3],
        ));
        *self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((stamp, index.clone()));
        index
    }
}

impl Authorizer for RbacAuthorizer {
    fn attach(&self, cache: &Arc<WatchCache>) {
        let _ = self.cache.set(cache.clone());
    }

    fn rules_review(&self, user: &User, namespace: &str) -> Value {
        let index = self.index();
        let mut rules = index.rules_of(user, namespace);
        let masters = Rule {
            verbs: vec!["*".into()],
            groups: vec!["*".into()],
            resources: vec!["*".into()],
            names: Vec::new(),
            urls: Vec::new(),
        };
        let masters_urls = Rule {
            verbs: vec!["*".into()],
            urls: vec!["*".into()],
            ..Rule::default()
        };
        if user.groups.iter().any(|g| g == MASTERS) {
            rules.insert(0, &masters_urls);
            rules.insert(0, &masters);
        }
        let resource_rules: Vec<Value> = rules
            .iter()
            .filter(|r| !r.resources.is_empty())
            .map(|r| {
                let mut v = serde_json::json!({"verbs": r.verbs, "apiGroups": r.groups, "resources": r.resources});
                if !r.names.is_empty() {
                    v["resourceNames"] = serde_json::json!(r.names);
                }
                v
            })
            .collect();
        let url_rules: Vec<Value> = rules
            .iter()
            .filter(|r| !r.urls.is_empty())
            .map(|r| serde_json::json!({"verbs": r.verbs, "nonResourceURLs": r.urls}))
            .collect();
        serde_json::json!({
            "resourceRules": resource_rules,
            "nonResourceRules": url_rules,
            "incomplete": false,
        })
    }

    /// RBAC's escalation check: a role may only hold, and a binding only grant, permissions its
    /// author holds — unless the author may `escalate` roles or `bind` that role.
    fn check_grant(
        &self,
        user: &User,
        plural: &str,
        namespace: Option<&str>,
        object: &Value,
    ) -> Result<(), String> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Ok(());
        }
        let index = self.index();
        let name = object["metadata"]["name"].as_str();
        let rules: Vec<Rule> = match plural {
            "roles" | "clusterroles" => {
                if index.allows(user, "escalate", GROUP, plural, namespace, name) {
                    return Ok(());
                }
                object["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(Rule::parse)
                    .collect()
            }
            "rolebindings" | "clusterrolebindings" => {
                let Some(binding) = Binding::parse(object) else {
                    return Ok(());
                };
                let role_plural = if binding.cluster_role {
                    "clusterroles"
                } else {
                    "roles"
                };
                if index.allows(
                    user,
                    "bind",
                    GROUP,
                    role_plural,
                    namespace,
                    Some(&binding.role),
                ) {
                    return Ok(());
                }
                index.rules(&binding, namespace).to_vec()
            }
            _ => return Ok(()),
        };
        let missing: Vec<String> = rules
            .iter()
            .filter(|r| !index.covers(user, namespace, r))
            .map(Rule::compact)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
        Err(format!(
            "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            groups.join(" "),
            missing.join("\n")
        ))
    }

    fn authorize(
        &self,
        user: &User,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> bool {
        if user.groups.iter().any(|g| g == MASTERS) {
            return true;
        }
        self.index()
            .allows(user, verb, group, resource, namespace, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> User {
        User::new(name, groups.iter().copied())
    }

    fn index() -> Index {
        let cluster_roles = vec![
            json!({"metadata": {"name": "view"},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]},
                   "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]}),
            json!({"metadata": {"name": "crd-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
                   "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]}),
            json!({"metadata": {"name": "node-reader"},
                   "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["*"], "resourceNames": ["n1"]},
                             {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]}]}),
        ];
        let roles = vec![
            json!({"metadata": {"name": "cm-writer", "namespace": "team"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "update"]}]}),
        ];
        let cluster_bindings = vec![json!({"metadata": {"name": "readers"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "node-reader"},
            "subjects": [{"kind": "Group", "name": "ops"}]})];
        let bindings = vec![
            json!({"metadata": {"name": "viewers", "namespace": "team"},
                   "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "robot"}]}),
            json!({"metadata": {"name": "writers", "namespace": "team"},
                   "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "cm-writer"},
                   "subjects": [{"kind": "User", "name": "bob"}]}),
        ];
        Index::build(&cluster_roles, &roles, &cluster_bindings, &bindings)
    }

    #[test]
    fn a_role_binding_grants_its_cluster_role_in_its_namespace_only() {
        let i = index();
        let alice = user("alice", &[]);
        assert!(i.allows(&alice, "list", "", "pods", Some("team"), None));
        assert!(i.allows(&alice, "get", "", "pods/log", Some("team"), Some("p")));
        assert!(!i.allows(&alice, "list", "", "pods", Some("default"), None));
        assert!(!i.allows(&alice, "list", "", "pods", None, None));
        assert!(!i.allows(&alice, "delete", "", "pods", Some("team"), Some("p")));
        assert!(!i.allows(&alice, "get", "", "pods/exec", Some("team"), Some("p")));
    }

    #[test]
    fn service_accounts_default_to_the_bindings_namespace() {
        let i = index();
        let robot = user(
            "system:serviceaccount:team:robot",
            &["system:serviceaccounts"],
        );
        assert!(i.allows(&robot, "watch", "", "pods", Some("team"), None));
        let other = user("system:serviceaccount:other:robot", &[]);
        assert!(!i.allows(&other, "watch", "", "pods", Some("team"), None));
    }

    #[test]
    fn aggregated_cluster_roles_carry_the_selected_roles_rules() {
        let i = index();
        let alice = user("alice", &[]);
        assert!(i.allows(
            &alice,
            "get",
            "example.com",
            "widgets",
            Some("team"),
            Some("w")
        ));
        assert!(!i.allows(&alice, "list", "example.com", "widgets", Some("team"), None));
    }

    #[test]
    fn resource_names_and_subresource_wildcards_restrict_and_widen() {
        let i = index();
        let ops = user("carol", &["ops"]);
        assert!(i.allows(&ops, "delete", "", "nodes", None, Some("n1")));
        assert!(!i.allows(&ops, "delete", "", "nodes", None, Some("n2")));
        // A named rule never covers list (no name).
        assert!(!i.allows(&ops, "list", "", "nodes", None, None));
        assert!(i.allows(
            &ops,
            "get",
            "apps",
            "deployments/status",
            Some("x"),
            Some("d")
        ));
        assert!(!i.allows(&ops, "get", "apps", "deployments", Some("x"), Some("d")));
    }

    #[test]
    fn namespaced_roles_are_found_in_their_namespace() {
        let i = index();
        let bob = user("bob", &[]);
        assert!(i.allows(&bob, "create", "", "configmaps", Some("team"), None));
        assert!(!i.allows(&bob, "delete", "", "configmaps", Some("team"), Some("c")));
        assert!(!i.allows(&bob, "create", "", "configmaps", Some("default"), None));
    }

    #[test]
    fn system_masters_is_always_allowed_and_others_need_a_binding() {
        let rbac = RbacAuthorizer::new();
        assert!(rbac.authorize(
            &user("admin", &[MASTERS]),
            "delete",
            "",
            "nodes",
            None,
            Some("n")
        ));
        assert!(!rbac.authorize(
            &user("mallory", &[]),
            "get",
            "",
            "pods",
            Some("default"),
            Some("p")
        ));
    }

    #[test]
    fn roles_may_hold_only_what_their_author_holds() {
        let i = index();
        let alice = user("alice", &[]);
        let read_pods = Rule::parse(
            &json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}),
        );
        assert!(i.covers(&alice, Some("team"), &read_pods));
        assert!(!i.covers(&alice, Some("default"), &read_pods));
        let delete_pods =
            Rule::parse(&json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}));
        assert!(!i.covers(&alice, Some("team"), &delete_pods));
        // A wildcard is covered only by a wildcard.
        let ops = user("carol", &["ops"]);
        let any_status = Rule::parse(
            &json!({"apiGroups": ["apps"], "resources": ["*/status"], "verbs": ["get"]}),
        );
        assert!(i.covers(&ops, None, &any_status));
        let everything =
            Rule::parse(&json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}));
        assert!(!i.covers(&ops, None, &everything));
        let named = Rule::parse(
            &json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["delete"], "resourceNames": ["n1"]}),
        );
        assert!(i.covers(&ops, None, &named));
        let urls = Rule::parse(&json!({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}));
        assert!(!i.covers(&ops, None, &urls));
        assert_eq!(
            delete_pods.compact(),
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#
        );
    }

    #[test]
    fn a_rules_review_lists_cluster_and_namespace_rules() {
        let i = index();
        let alice = user("alice", &[]);
        assert_eq!(
            i.rules_of(&alice, "team").len(),
            2,
            "view's own rule and the aggregated one"
        );
        assert!(i.rules_of(&alice, "default").is_empty());
        let ops = user("carol", &["ops"]);
        assert_eq!(i.rules_of(&ops, "anything").len(), 2);
    }

    #[test]
    fn selectors_support_expressions() {
        let labels = json!({"tier": "web", "env": "prod"});
        assert!(selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "db"]}]}),
            &labels
        ));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(!selects(
            &json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}),
            &labels
        ));
        assert!(!selects(&json!({"matchLabels": {"tier": "db"}}), &labels));
    }
}
