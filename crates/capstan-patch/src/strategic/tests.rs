use serde_json::{Value, json};

use super::strategic_merge_patch;

fn resource(api_version: &str, kind: &str) -> &'static capstan_api::ResourceInfo {
    capstan_api::find_kind(api_version, kind).expect("resource is registered")
}

fn check(kind: (&str, &str), original: Value, patch: Value, expected: Value) {
    let patched =
        strategic_merge_patch(&original, &patch, resource(kind.0, kind.1)).expect("patch applies");
    assert_eq!(
        patched, expected,
        "\npatch:    {patch}\ngot:      {patched}\nexpected: {expected}"
    );
}

fn check_err(kind: (&str, &str), original: Value, patch: Value, bad_request: bool) {
    let err = strategic_merge_patch(&original, &patch, resource(kind.0, kind.1))
        .expect_err("patch must fail");
    assert_eq!(err.is_bad_request(), bad_request, "{err}");
}

const DEPLOYMENT: (&str, &str) = ("apps/v1", "Deployment");
const POD: (&str, &str) = ("v1", "Pod");

/// A Deployment as kube-apiserver stores it (defaulted), with a server-injected sidecar.
fn live_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "7", "generation": 1,
            "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "old"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app", "image": "app:1", "imagePullPolicy": "IfNotPresent",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "terminationMessagePath": "/dev/termination-log"
                        },
                        {"name": "proxy", "image": "proxy:1"}
                    ],
                    "restartPolicy": "Always",
                    "tolerations": [{"key": "a", "operator": "Exists"}]
                }
            }
        },
        "status": {"replicas": 2}
    })
}

/// Sets `value` at a JSON pointer of `doc` (the parent must exist).
fn with(mut doc: Value, path: &str, value: Value) -> Value {
    let (parent, key) = path.rsplit_once('/').expect("pointer has a parent");
    match doc.pointer_mut(parent).expect("parent exists") {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(list) => list[key.parse::<usize>().expect("index")] = value,
        _ => panic!("{parent} is not a container"),
    }
    doc
}

#[test]
fn kubectl_apply_changes_image_and_removes_env_var() {
    // What kubectl 1.32 sends for `kubectl apply` when the config changes the image to app:2 and
    // drops env B (3-way patch of last-applied, new config and live): `$setElementOrder` lists the
    // config's order, `$patch: delete` removes the dropped element.
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "new"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{
                "$setElementOrder/env": [{"name": "A"}],
                "env": [{"$patch": "delete", "name": "B"}],
                "image": "app:2",
                "name": "app"
            }]
        }}}
    });
    let mut expected = live_deployment();
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!("new");
    let app = &mut expected["spec"]["template"]["spec"]["containers"][0];
    app["image"] = json!("app:2");
    app["env"] = json!([{"name": "A", "value": "1"}]);
    check(DEPLOYMENT, live_deployment(), patch, expected);
}

#[test]
fn kubectl_set_image_merges_containers_by_name() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "proxy:2"}]}}}});
    let expected = with(
        live_deployment(),
        "/spec/template/spec/containers/1/image",
        json!("proxy:2"),
    );
    check(DEPLOYMENT, live_deployment(), patch, expected);
}

#[test]
fn kubectl_scale_and_label_style_map_patches() {
    let patch =
        json!({"spec": {"replicas": 5}, "metadata": {"labels": {"tier": "front", "app": null}}});
    let expected = with(
        with(live_deployment(), "/spec/replicas", json!(5)),
        "/metadata/labels",
        json!({"tier": "front"}),
    );
    check(DEPLOYMENT, live_deployment(), patch, expected);
}

#[test]
fn list_and_map_directives() {
    let containers = "/spec/template/spec/containers";
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            // kube-apiserver puts elements the live list lacks first (no $setElementOrder).
            "new container is prepended",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "log", "image": "log:1"}]}}}}),
            with(live_deployment(), containers, {
                let mut list = live_deployment()
                    .pointer(containers)
                    .cloned()
                    .expect("containers");
                list.as_array_mut()
                    .expect("list")
                    .insert(0, json!({"name": "log", "image": "log:1"}));
                list
            }),
        ),
        (
            "$patch: delete removes an element by merge key",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "proxy", "$patch": "delete"}]}}}}),
            with(
                live_deployment(),
                containers,
                json!([live_deployment()
                    .pointer("/spec/template/spec/containers/0")
                    .cloned()]),
            ),
        ),
        (
            "$patch: replace element replaces the whole list",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}}}}),
            with(
                live_deployment(),
                containers,
                json!([{"name": "only", "image": "x"}]),
            ),
        ),
        (
            "$patch: replace in a map replaces the map",
            json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}),
            with(
                live_deployment(),
                "/spec/strategy",
                json!({"type": "Recreate"}),
            ),
        ),
        (
            "$patch: delete in a map empties it",
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            with(live_deployment(), "/metadata/labels", json!({})),
        ),
        (
            "$patch: merge is a plain merge",
            json!({"spec": {"strategy": {"$patch": "merge", "rollingUpdate": {"maxSurge": 1}}}}),
            with(
                live_deployment(),
                "/spec/strategy/rollingUpdate/maxSurge",
                json!(1),
            ),
        ),
        (
            "$patch: merge in a list element merges the element",
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "merge", "name": "proxy", "image": "proxy:3"}]}}}}),
            with(
                live_deployment(),
                "/spec/template/spec/containers/1/image",
                json!("proxy:3"),
            ),
        ),
        (
            "$retainKeys clears the keys it does not list",
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
            with(
                live_deployment(),
                "/spec/strategy",
                json!({"type": "Recreate"}),
            ),
        ),
        (
            "$setElementOrder reorders, server-only elements keep their place after their predecessors",
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "log"}, {"name": "app"}],
                "containers": [{"name": "log", "image": "log:1"}]
            }}}}),
            with(
                live_deployment(),
                containers,
                json!([
                    {"name": "log", "image": "log:1"},
                    live_deployment().pointer("/spec/template/spec/containers/0").cloned(),
                    {"name": "proxy", "image": "proxy:1"}
                ]),
            ),
        ),
        (
            "$setElementOrder without the list only reorders",
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "proxy"}, {"name": "app"}]}}}}),
            with(
                live_deployment(),
                containers,
                json!([
                    {"name": "proxy", "image": "proxy:1"},
                    live_deployment().pointer("/spec/template/spec/containers/0").cloned()
                ]),
            ),
        ),
        (
            "env merges by name, ports by containerPort",
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "app",
                "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
                "ports": [{"containerPort": 9090}]
            }]}}}}),
            {
                let doc = with(
                    live_deployment(),
                    "/spec/template/spec/containers/0/env",
                    json!([
                        {"name": "A", "value": "1"}, {"name": "B", "value": "two"}, {"name": "C", "value": "3"}
                    ]),
                );
                with(
                    doc,
                    "/spec/template/spec/containers/0/ports",
                    json!([
                        {"containerPort": 9090}, {"containerPort": 8080, "protocol": "TCP"}
                    ]),
                )
            },
        ),
        (
            "tolerations have no merge strategy: replaced",
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}}),
            with(
                live_deployment(),
                "/spec/template/spec/tolerations",
                json!([{"key": "b", "operator": "Exists"}]),
            ),
        ),
        (
            "a new map field is merged into nothing, directives inside take effect",
            json!({"spec": {"template": {"spec": {"securityContext": {"runAsUser": 1, "sysctls": null}}}}}),
            with(
                live_deployment(),
                "/spec/template/spec/securityContext",
                json!({"runAsUser": 1}),
            ),
        ),
        (
            "a new merge list drops delete directives",
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "$patch": "delete"}]}}}}),
            with(
                live_deployment(),
                "/spec/template/spec/volumes",
                json!([{"name": "v", "emptyDir": {}}]),
            ),
        ),
        (
            "null for an absent key is ignored",
            json!({"spec": {"paused": null}}),
            live_deployment(),
        ),
    ];
    for (name, patch, expected) in cases {
        let patched = strategic_merge_patch(
            &live_deployment(),
            &patch,
            resource(DEPLOYMENT.0, DEPLOYMENT.1),
        )
        .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(
            patched, expected,
            "{name}\ngot:      {patched}\nexpected: {expected}"
        );
    }
}

/// Cases from apimachinery's strategicpatch tests that pin down the order of merged lists.
#[test]
fn set_element_order_with_server_only_items() {
    let list = |names: &[(&str, Option<&str>)]| -> Value {
        names
            .iter()
            .map(|(name, other)| match other {
                Some(other) => json!({"name": name, "image": other}),
                None => json!({"name": name}),
            })
            .collect()
    };
    let pod = |containers: Value| json!({"spec": {"containers": containers}});
    // Add 3, delete 1: the added element takes the deleted one's place among the live elements.
    check(
        POD,
        pod(list(&[("1", None), ("2", Some("b")), ("4", Some("c"))])),
        json!({"spec": {"$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
                        "containers": [{"name": "3"}, {"name": "1", "$patch": "delete"}]}}),
        pod(list(&[("2", Some("b")), ("4", Some("c")), ("3", None)])),
    );
    // Reorder with server-only elements in between.
    check(
        POD,
        pod(list(&[
            ("1", Some("a")),
            ("2", None),
            ("7", None),
            ("9", None),
            ("8", None),
            ("3", None),
            ("4", None),
        ])),
        json!({"spec": {"$setElementOrder/containers": [{"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}]}}),
        pod(list(&[
            ("2", None),
            ("1", Some("a")),
            ("7", None),
            ("9", None),
            ("8", None),
            ("4", None),
            ("3", None),
        ])),
    );
    // Add an element first.
    check(
        POD,
        pod(list(&[("1", Some("a")), ("2", Some("b"))])),
        json!({"spec": {"$setElementOrder/containers": [{"name": "3"}, {"name": "1"}, {"name": "2"}],
                        "containers": [{"name": "3", "image": "c"}]}}),
        pod(list(&[
            ("3", Some("c")),
            ("1", Some("a")),
            ("2", Some("b")),
        ])),
    );
}

#[test]
fn primitive_merge_lists_are_sets() {
    let pod = json!({"metadata": {"name": "p", "finalizers": ["a", "b", "c"]}});
    check(
        POD,
        pod.clone(),
        json!({"metadata": {"finalizers": ["d", "a"]}}),
        json!({"metadata": {"name": "p", "finalizers": ["d", "a", "b", "c"]}}),
    );
    check(
        POD,
        pod.clone(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
        json!({"metadata": {"name": "p", "finalizers": ["a", "c"]}}),
    );
    // kubectl apply removing finalizer b: order list plus deletion list.
    check(
        POD,
        pod.clone(),
        json!({"metadata": {"$setElementOrder/finalizers": ["c", "a"], "$deleteFromPrimitiveList/finalizers": ["b"]}}),
        json!({"metadata": {"name": "p", "finalizers": ["c", "a"]}}),
    );
    // A list without the merge strategy (container args) is replaced.
    check(
        POD,
        json!({"spec": {"containers": [{"name": "c", "args": ["x", "y"]}]}}),
        json!({"spec": {"containers": [{"name": "c", "args": ["z"]}]}}),
        json!({"spec": {"containers": [{"name": "c", "args": ["z"]}]}}),
    );
}

#[test]
fn pod_lists_merge_by_their_keys() {
    let pod = json!({"spec": {
        "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/a", "name": "va"}]}],
        "initContainers": [{"name": "init", "image": "i:1"}],
        "volumes": [{"name": "va", "emptyDir": {}}],
        "imagePullSecrets": [{"name": "s1"}],
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}],
        "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]
    }});
    let patch = json!({"spec": {
        "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/a", "readOnly": true}, {"mountPath": "/b", "name": "vb"}]}],
        "initContainers": [{"name": "init", "image": "i:2"}],
        "volumes": [{"name": "vb", "emptyDir": {}}],
        "imagePullSecrets": [{"name": "s2"}],
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
        "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}]
    }});
    let expected = json!({"spec": {
        "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/a", "name": "va", "readOnly": true}, {"mountPath": "/b", "name": "vb"}]}],
        "initContainers": [{"name": "init", "image": "i:2"}],
        "volumes": [{"name": "vb", "emptyDir": {}}, {"name": "va", "emptyDir": {}}],
        "imagePullSecrets": [{"name": "s2"}, {"name": "s1"}],
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}],
        "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2, "whenUnsatisfiable": "DoNotSchedule"}]
    }});
    check(POD, pod, patch, expected);
}

#[test]
fn status_conditions_merge_by_type() {
    let node = json!({"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]
    }});
    let patch = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "addresses": [{"type": "Hostname", "address": "n1"}]
    }});
    check(
        ("v1", "Node"),
        node,
        patch,
        json!({"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}, {"type": "MemoryPressure", "status": "False"}],
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.1"}]
        }}),
    );
    let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
    check(
        POD,
        pod,
        json!({"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}),
        json!({"status": {"conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}]}}),
    );
}

#[test]
fn service_ports_merge_by_port_and_owner_references_by_uid() {
    let svc = json!({
        "metadata": {"ownerReferences": [{"uid": "1", "name": "a", "kind": "X", "apiVersion": "v1"}]},
        "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}], "selector": {"app": "a"}}
    });
    let patch = json!({
        "metadata": {"ownerReferences": [{"uid": "2", "name": "b", "kind": "X", "apiVersion": "v1"}]},
        "spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "targetPort": 8443}]}
    });
    check(
        ("v1", "Service"),
        svc,
        patch,
        json!({
            "metadata": {"ownerReferences": [
                {"uid": "2", "name": "b", "kind": "X", "apiVersion": "v1"},
                {"uid": "1", "name": "a", "kind": "X", "apiVersion": "v1"}
            ]},
            "spec": {"ports": [{"port": 80, "targetPort": 9090, "protocol": "TCP"}, {"port": 443, "targetPort": 8443}], "selector": {"app": "a"}}
        }),
    );
}

#[test]
fn replace_strategy_and_unknown_fields() {
    // PodDisruptionBudgetSpec.selector has patchStrategy "replace".
    let pdb = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
    check(
        ("policy/v1", "PodDisruptionBudget"),
        pdb,
        json!({"spec": {"selector": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}}}),
        json!({"spec": {"selector": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}, "minAvailable": 1}}),
    );
    // Fields the schema does not know: maps merge, lists are replaced.
    let pod = json!({"spec": {"x-custom": {"a": 1, "items": [{"name": "a"}]}}});
    check(
        POD,
        pod,
        json!({"spec": {"x-custom": {"b": 2, "items": [{"name": "b"}]}}}),
        json!({"spec": {"x-custom": {"a": 1, "b": 2, "items": [{"name": "b"}]}}}),
    );
}

#[test]
fn errors_are_classified() {
    let live = live_deployment();
    // Malformed: 400.
    check_err(DEPLOYMENT, live.clone(), json!(["not", "a", "map"]), true);
    check_err(
        DEPLOYMENT,
        live.clone(),
        json!({"spec": {"$patch": "frobnicate"}}),
        true,
    );
    check_err(
        DEPLOYMENT,
        live.clone(),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        true,
    );
    check_err(
        DEPLOYMENT,
        live.clone(),
        json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
        true,
    );
    check_err(
        DEPLOYMENT,
        live.clone(),
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "proxy"}],
            "containers": [{"name": "proxy", "image": "p"}, {"name": "app", "image": "a"}]
        }}}}),
        true,
    );
    check_err(
        POD,
        json!({"metadata": {"finalizers": ["a"]}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
        true,
    );
    // Cannot apply: 422/500.
    check_err(
        DEPLOYMENT,
        live.clone(),
        json!({"spec": {"template": {"spec": {"containers": [{"image": "no-name"}]}}}}),
        false,
    );
    check_err(
        DEPLOYMENT,
        live,
        json!({"spec": {"template": {"spec": {"containers": ["a"]}}}}),
        false,
    );
}
