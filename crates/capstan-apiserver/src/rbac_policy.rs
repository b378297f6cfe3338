//! The default RBAC policy the API server creates at start (and brings up to date unless an object is
//! annotated `rbac.authorization.kubernetes.io/autoupdate: "false"`): the user-facing ClusterRoles
//! (`cluster-admin`, `admin`, `edit`, `view`, aggregating as on Kubernetes), the discovery and
//! self-review roles every authenticated user has, and one role per Capstan component.
//!
//! Component roles follow what the components call, not kube-apiserver's list: Capstan's
//! controllers run as one identity (`system:kube-controller-manager`), not one service account per
//! controller, so that role reaches every resource; nodes (`system:nodes`, kubelet and service
//! proxy) are bound to `system:node` cluster-wide — there is no Node authorizer limiting a kubelet
//! to its own pods' objects.

use serde_json::{Value, json};

/// The annotation that, set to `"false"`, keeps the server from rewriting a default object.
pub(crate) const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const ALL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn urls(paths: &[&str]) -> Value {
    json!({"nonResourceURLs": paths, "verbs": ["get"]})
}

fn metadata(name: &str, namespace: Option<&str>, labels: Value) -> Value {
    let mut labels = labels;
    labels["kubernetes.io/bootstrapping"] = json!("rbac-defaults");
    let mut meta = json!({
        "name": name,
        "labels": labels,
        "annotations": {AUTOUPDATE: "true"},
    });
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": metadata(name, None, labels),
        "rules": rules,
    })
}

/// A user-facing role that also takes the rules of roles labelled `aggregate-to-<name>`.
fn aggregated(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    let mut role = cluster_role(name, labels, rules);
    role["aggregationRule"] = json!({"clusterRoleSelectors": [
        {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{name}"): "true"}}
    ]});
    role
}

fn subject(kind: &str, name: &str) -> Value {
    if kind == "User" || kind == "Group" {
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name})
    } else {
        json!({"kind": kind, "name": name})
    }
}

fn cluster_binding(name: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": metadata(name, None, json!({})),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// What `view` may read: workloads, their status and scale, services, config but not secrets.
fn view_rules() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "bindings",
                "configmaps",
                "endpoints",
                "events",
                "limitranges",
                "namespaces",
                "namespaces/status",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "pods/log",
                "pods/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
                "serviceaccounts",
                "services",
                "services/status",
            ],
            READ,
        ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            READ,
        ),
        rule(
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            READ,
        ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            READ,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            READ,
        ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
            READ,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(&["events.k8s.io"], &["events"], READ),
        rule(&["metrics.k8s.io"], &["pods", "nodes"], READ),
    ]
}

/// `edit`: `view` plus changing workloads, services, config and secrets, and exec/attach/port-forward.
fn edit_rules() -> Vec<Value> {
    let mut rules = view_rules();
    rules.extend([
        // As Kubernetes' edit role: act as the namespace's service accounts (`kubectl --as`).
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            READ,
        ),
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            WRITE,
        ),
        rule(
            &[""],
            &["pods/eviction", "serviceaccounts/token"],
            &["create"],
        ),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            WRITE,
        ),
        rule(&["batch"], &["cronjobs", "jobs"], WRITE),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
        rule(&["policy"], &["poddisruptionbudgets"], WRITE),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
            WRITE,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], WRITE),
        rule(&["coordination.k8s.io"], &["leases"], ALL),
    ]);
    rules
}

/// `admin`: `edit` plus roles and bindings in the namespace and local access reviews.
fn admin_rules() -> Vec<Value> {
    let mut rules = edit_rules();
    rules.extend([
        rule(
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
            ALL,
        ),
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
    ]);
    rules
}

/// Every default object: `(resource plural, namespace, object)`.
pub(crate) fn objects() -> Vec<(&'static str, Option<&'static str>, Value)> {
    let everything = rule(&["*"], &["*"], &["*"]);
    let events = [
        rule(&[""], &["events"], &["create", "patch", "update"]),
        rule(
            &["events.k8s.io"],
            &["events"],
            &["create", "patch", "update"],
        ),
    ];
    let leases = rule(
        &["coordination.k8s.io"],
        &["leases"],
        &[
            "create", "get", "list", "watch", "update", "patch", "delete",
        ],
    );
    let roles = vec![
        cluster_role(
            "cluster-admin",
            json!({}),
            vec![
                everything.clone(),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        aggregated("admin", json!({}), admin_rules()),
        aggregated(
            "edit",
            json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
            edit_rules(),
        ),
        aggregated(
            "view",
            json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
            view_rules(),
        ),
        cluster_role(
            "system:basic-user",
            json!({}),
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        cluster_role(
            "system:discovery",
            json!({}),
            vec![urls(&[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
        cluster_role(
            "system:public-info-viewer",
            json!({}),
            vec![urls(&[
                "/healthz",
                "/livez",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
        cluster_role(
            "system:node-bootstrapper",
            json!({}),
            vec![
                rule(
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests"],
                    &["create", "get", "list", "watch"],
                ),
                rule(
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests/nodeclient"],
                    &["create"],
                ),
            ],
        ),
        cluster_role("system:node", json!({}), {
            let mut rules = vec![
                rule(
                    &[""],
                    &["nodes"],
                    &["create", "get", "list", "watch", "patch", "update"],
                ),
                rule(
                    &[""],
                    &["nodes/status", "pods/status"],
                    &["get", "patch", "update"],
                ),
                rule(
                    &[""],
                    &["pods"],
                    &["get", "list", "watch", "create", "delete"],
                ),
                rule(
                    &[""],
                    &["pods/eviction", "serviceaccounts/token"],
                    &["create"],
                ),
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                        "secrets",
                        "serviceaccounts",
                        "services",
                    ],
                    READ,
                ),
                rule(
                    &[""],
                    &["persistentvolumeclaims/status"],
                    &["patch", "update"],
                ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
                rule(
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests"],
                    &["create", "get", "list", "watch"],
                ),
                rule(
                    &["storage.k8s.io"],
                    &[
                        "csidrivers",
                        "csinodes",
                        "storageclasses",
                        "volumeattachments",
                    ],
                    READ,
                ),
                rule(&["node.k8s.io"], &["runtimeclasses"], READ),
                leases.clone(),
            ];
            rules.extend(events.iter().cloned());
            rules
        }),
        cluster_role("system:kube-scheduler", json!({}), {
            let mut rules = vec![
                rule(&[""], &["nodes", "namespaces"], READ),
                rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
                rule(&[""], &["bindings", "pods/binding"], &["create"]),
                rule(&[""], &["pods/status"], &["get", "patch", "update"]),
                rule(
                    &[""],
                    &[
                        "persistentvolumeclaims",
                        "persistentvolumes",
                        "replicationcontrollers",
                        "services",
                    ],
                    READ,
                ),
                rule(&["apps"], &["replicasets", "statefulsets"], READ),
                rule(&["policy"], &["poddisruptionbudgets"], READ),
                rule(
                    &["storage.k8s.io"],
                    &[
                        "csidrivers",
                        "csinodes",
                        "csistoragecapacities",
                        "storageclasses",
                    ],
                    READ,
                ),
                rule(&["scheduling.k8s.io"], &["priorityclasses"], READ),
                leases.clone(),
            ];
            rules.extend(events.iter().cloned());
            rules
        }),
        cluster_role(
            "system:kube-controller-manager",
            json!({}),
            vec![everything.clone()],
        ),
        cluster_role(
            "system:capstan-dns",
            json!({}),
            vec![
                rule(&[""], &["services", "endpoints"], READ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
            ],
        ),
    ];
    let group = |g: &str| subject("Group", g);
    let user = |u: &str| subject("User", u);
    let cluster_bindings = vec![
        cluster_binding(
            "cluster-admin",
            "cluster-admin",
            vec![group("system:masters")],
        ),
        cluster_binding(
            "system:basic-user",
            "system:basic-user",
            vec![group("system:authenticated")],
        ),
        cluster_binding(
            "system:discovery",
            "system:discovery",
            vec![group("system:authenticated")],
        ),
        cluster_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![
                group("system:authenticated"),
                group("system:unauthenticated"),
            ],
        ),
        cluster_binding(
            "system:node-bootstrapper",
            "system:node-bootstrapper",
            vec![group("system:bootstrappers")],
        ),
        cluster_binding("system:node", "system:node", vec![group("system:nodes")]),
        cluster_binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            vec![user("system:kube-scheduler")],
        ),
        cluster_binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager")],
        ),
        cluster_binding(
            "system:capstan-dns",
            "system:capstan-dns",
            vec![user("system:kube-dns")],
        ),
    ];
    // The DNS server writes its own Service, Endpoints and EndpointSlice in kube-system only.
    let dns_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": metadata("system:capstan-dns", Some("kube-system"), json!({})),
        "rules": [
            rule(&[""], &["services", "endpoints"], ALL),
            rule(&["discovery.k8s.io"], &["endpointslices"], ALL),
        ],
    });
    let dns_binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": metadata("system:capstan-dns", Some("kube-system"), json!({})),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "system:capstan-dns"},
        "subjects": [user("system:kube-dns")],
    });
    let mut out: Vec<(&'static str, Option<&'static str>, Value)> = Vec::new();
    out.extend(roles.into_iter().map(|r| ("clusterroles", None, r)));
    out.extend(
        cluster_bindings
            .into_iter()
            .map(|b| ("clusterrolebindings", None, b)),
    );
    out.push(("roles", Some("kube-system"), dns_role));
    out.push(("rolebindings", Some("kube-system"), dns_binding));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::User;
    use crate::rbac::Index;

    fn index() -> Index {
        let all = objects();
        let of = |plural: &str| -> Vec<Value> {
            all.iter()
                .filter(|(p, _, _)| *p == plural)
                .map(|(_, _, o)| o.clone())
                .collect()
        };
        Index::build(
            &of("clusterroles"),
            &of("roles"),
            &of("clusterrolebindings"),
            &of("rolebindings"),
        )
    }

    #[test]
    fn every_default_object_decodes_strictly_as_its_kind() {
        for (plural, _, object) in objects() {
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let resource =
                capstan_api::find("rbac.authorization.k8s.io", "v1", plural).expect("rbac kind");
            let decoded =
                capstan_api::decode_value(resource, object, capstan_api::FieldValidation::Strict);
            assert!(
                decoded.as_ref().is_ok_and(|d| d.warnings.is_empty()),
                "{plural}/{name}: {decoded:?}"
            );
        }
    }

    #[test]
    fn components_get_what_they_call() {
        let i = index();
        let scheduler = User::new("system:kube-scheduler", Vec::<String>::new());
        assert!(i.allows(
            &scheduler,
            "create",
            "",
            "pods/binding",
            Some("a"),
            Some("p")
        ));
        assert!(i.allows(&scheduler, "watch", "", "nodes", None, None));
        assert!(!i.allows(&scheduler, "delete", "", "nodes", None, Some("n")));
        let node = User::new("system:node:n1", ["system:nodes"]);
        assert!(i.allows(&node, "patch", "", "nodes/status", None, Some("n1")));
        assert!(i.allows(
            &node,
            "list",
            "discovery.k8s.io",
            "endpointslices",
            None,
            None
        ));
        assert!(!i.allows(&node, "create", "apps", "deployments", Some("a"), None));
        let dns = User::new("system:kube-dns", Vec::<String>::new());
        assert!(i.allows(
            &dns,
            "update",
            "",
            "services",
            Some("kube-system"),
            Some("kube-dns")
        ));
        assert!(!i.allows(&dns, "update", "", "services", Some("default"), Some("web")));
        let bootstrap = User::new("system:bootstrap:capstan", ["system:bootstrappers"]);
        assert!(i.allows(
            &bootstrap,
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
            None,
            None
        ));
        assert!(!i.allows(&bootstrap, "list", "", "secrets", None, None));
    }

    #[test]
    fn view_edit_and_admin_nest_and_keep_secrets_from_viewers() {
        let i = index();
        // A user bound nowhere may only ask who they are and what they may do.
        let nobody = User::new("nobody", Vec::<String>::new());
        assert!(i.allows(
            &nobody,
            "create",
            "authentication.k8s.io",
            "selfsubjectreviews",
            None,
            None
        ));
        assert!(!i.allows(&nobody, "list", "", "pods", Some("default"), None));
        let cluster_roles: Vec<Value> = objects()
            .into_iter()
            .filter(|(p, _, _)| *p == "clusterroles")
            .map(|(_, _, o)| o)
            .collect();
        let rules = |role: &str, verb: &str, group: &str, resource: &str| {
            let binding = json!({"metadata": {"name": "b", "namespace": "team"},
                                 "roleRef": {"kind": "ClusterRole", "name": role},
                                 "subjects": [{"kind": "User", "name": "u"}]});
            Index::build(&cluster_roles, &[], &[], &[binding]).allows(
                &User::new("u", Vec::<String>::new()),
                verb,
                group,
                resource,
                Some("team"),
                None,
            )
        };
        assert!(rules("view", "list", "apps", "deployments"));
        assert!(!rules("view", "list", "", "secrets"));
        assert!(!rules("view", "create", "", "pods"));
        assert!(rules("edit", "list", "", "secrets"));
        assert!(rules("edit", "create", "", "pods/exec"));
        assert!(rules("edit", "impersonate", "", "serviceaccounts"));
        assert!(!rules("edit", "impersonate", "", "users"));
        assert!(!rules(
            "edit",
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings"
        ));
        assert!(rules(
            "admin",
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings"
        ));
        assert!(rules("admin", "patch", "apps", "deployments/scale"));
    }
}
