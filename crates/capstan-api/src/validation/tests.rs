//! Data-driven tests: each case is an object as a client sends it, run through decode,
//! defaulting and validation as the API server runs it, and the exact messages expected.

use serde_json::{Value, json};

use crate::decode::{FieldValidation, decode_value};
use crate::defaults::apply_defaults;
use crate::registry::{ResourceInfo, resources};
use crate::validation::{validate_create, validate_update};

fn resource(kind: &str) -> &'static ResourceInfo {
    resources()
        .iter()
        .find(|r| r.kind == kind)
        .expect("kind is registered")
}

/// Decodes and defaults `object` as the server does before validating.
fn prepare(kind: &str, object: Value) -> Value {
    let r = resource(kind);
    let mut object = decode_value(r, object, FieldValidation::Ignore)
        .expect("decodes")
        .object;
    apply_defaults(r, &mut object);
    object
}

/// Runs create validation of `object` and compares every rendered error.
fn check(kind: &str, object: Value, expected: &[&str]) {
    let prepared = prepare(kind, object);
    let got: Vec<String> = validate_create(resource(kind), &prepared)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, expected, "{kind}: {prepared:#}");
}

/// Runs update validation of `old` → `new`.
fn check_update(kind: &str, old: Value, new: Value, expected: &[&str]) {
    let old = prepare(kind, old);
    let new = prepare(kind, new);
    let got: Vec<String> = validate_update(resource(kind), &new, &old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, expected, "{kind}");
}

fn pod(spec: Value) -> Value {
    json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

fn container() -> Value {
    json!({"name": "c", "image": "nginx:1.27"})
}

fn deployment(selector: Value, labels: Value) -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container()]}}
        }
    })
}

fn job(restart: Option<&str>) -> Value {
    let mut spec = json!({"containers": [container()]});
    if let Some(r) = restart {
        spec["restartPolicy"] = json!(r);
    }
    json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "0b1c-uid"},
        "spec": {"template": {"spec": spec}}
    })
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

#[test]
fn bad_names_use_the_kinds_name_rule() {
    let mut p = pod(json!({"containers": [container()]}));
    p["metadata"]["name"] = json!("Foo_Bar");
    check(
        "Pod",
        p,
        &[&format!(
            "metadata.name: Invalid value: \"Foo_Bar\": {SUBDOMAIN_MSG}"
        )],
    );
    check(
        "Namespace",
        json!({"metadata": {"name": "Foo_Bar"}}),
        &[
            "metadata.name: Invalid value: \"Foo_Bar\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ],
    );
    check(
        "Service",
        json!({"metadata": {"name": "1web", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}}),
        &[
            "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ],
    );
    check(
        "ConfigMap",
        json!({"metadata": {"namespace": "d"}}),
        &["metadata.name: Required value: name or generateName is required"],
    );
    check(
        "Node",
        json!({"metadata": {"name": "n1", "namespace": "default"}}),
        &["metadata.namespace: Forbidden: not allowed on this type"],
    );
}

#[test]
fn pod_spec_errors_read_like_kubernetes() {
    check(
        "Pod",
        pod(json!({"containers": [{"name": "c"}]})),
        &["spec.containers[0].image: Required value"],
    );
    check(
        "Pod",
        pod(json!({"containers": [container(), container()]})),
        &["spec.containers[1].name: Duplicate value: \"c\""],
    );
    check(
        "Pod",
        pod(
            json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "protocol": "XYZ"}]}]}),
        ),
        &[
            "spec.containers[0].ports[0].protocol: Unsupported value: \"XYZ\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        ],
    );
    check("Pod", pod(json!({})), &["spec.containers: Required value"]);
    check(
        "Pod",
        pod(
            json!({"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}]}),
        ),
        &["spec.containers[0].volumeMounts[0].name: Not found: \"x\""],
    );
    check(
        "Pod",
        pod(json!({"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]})),
        &[
            "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        ],
    );
    check(
        "Pod",
        pod(
            json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 70000}]}]}),
        ),
        &[
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ],
    );
    check(
        "Pod",
        pod(
            json!({"restartPolicy": "Sometimes", "dnsPolicy": "Bogus", "containers": [container()]}),
        ),
        &[
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            "spec.dnsPolicy: Unsupported value: \"Bogus\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
        ],
    );
    check(
        "Pod",
        pod(json!({"containers": [container()], "volumes": [
            {"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}},
            {"name": "w", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]})),
        &[
            "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
            "spec.volumes[2].name: Duplicate value: \"w\"",
        ],
    );
    check(
        "Pod",
        pod(
            json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A=B", "value": "1"}],
            "livenessProbe": {"periodSeconds": 5}}]}),
        ),
        &[
            "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            "spec.containers[0].livenessProbe: Required value: must specify a handler type",
        ],
    );
}

#[test]
fn well_formed_pods_pass() {
    check(
        "Pod",
        pod(json!({"containers": [{"name": "c", "image": "x",
            "env": [{"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/cfg"}],
            "readinessProbe": {"httpGet": {"port": 8080}},
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}],
            "volumes": [{"name": "data"}, {"name": "cfg", "configMap": {"name": "c"}}]})),
        &[],
    );
}

#[test]
fn workload_selectors_must_match_and_stay() {
    check(
        "Deployment",
        deployment(json!({"app": "a"}), json!({"app": "b"})),
        &[
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`",
        ],
    );
    check(
        "Deployment",
        deployment(json!({"app": "a"}), json!({"app": "a"})),
        &[],
    );
    check_update(
        "Deployment",
        deployment(json!({"app": "a"}), json!({"app": "a", "v": "2"})),
        deployment(json!({"app": "b"}), json!({"app": "b"})),
        &[
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
        ],
    );
    let mut d = deployment(json!({"app": "a"}), json!({"app": "a"}));
    d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
    d["spec"]["replicas"] = json!(-1);
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    check(
        "Deployment",
        d,
        &[
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
        ],
    );
    let mut no_selector = deployment(json!({}), json!({"app": "a"}));
    no_selector["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("selector");
    check(
        "Deployment",
        no_selector,
        &[
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"a\"}: `selector` does not match template `labels`",
        ],
    );
}

#[test]
fn jobs_need_a_terminating_restart_policy() {
    check(
        "Job",
        job(None),
        &[
            "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
        ],
    );
    check(
        "Job",
        job(Some("Always")),
        &[
            "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
        ],
    );
    check("Job", job(Some("Never")), &[]);
}

#[test]
fn job_templates_are_immutable() {
    let prepared_old = prepare("Job", job(Some("Never")));
    let mut new = prepared_old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox");
    let errs = validate_update(resource("Job"), &new, &prepared_old);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "spec.template");
    assert!(errs[0].to_string().ends_with(": field is immutable"));
}

#[test]
fn cron_schedules_are_parsed() {
    let cj = |schedule: &str| {
        json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [container()], "restartPolicy": "OnFailure"}}}}}})
    };
    check("CronJob", cj("*/5 * * * *"), &[]);
    check("CronJob", cj("@hourly"), &[]);
    check(
        "CronJob",
        cj("every minute"),
        &[
            "spec.schedule: Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]",
        ],
    );
}

#[test]
fn services_need_ports_and_keep_their_cluster_ip() {
    check(
        "Service",
        json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"selector": {"app": "a"}}}),
        &["spec.ports: Required value"],
    );
    check(
        "Service",
        json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"clusterIP": "None"}}),
        &[],
    );
    check(
        "Service",
        json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"type": "NodePort",
            "ports": [{"port": 80}, {"name": "b", "port": 81, "nodePort": 80}]}}),
        &[
            "spec.ports[0].name: Required value",
            "spec.ports[1].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
        ],
    );
    let svc = |ip: &str| {
        json!({"metadata": {"name": "s", "namespace": "d"},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"port": 80}]}})
    };
    check_update(
        "Service",
        svc("10.0.0.10"),
        svc("10.0.0.11"),
        &["spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.11\"}: may not change once set"],
    );
}

#[test]
fn pod_updates_may_change_only_images() {
    let old = pod(json!({"containers": [container()]}));
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    check_update("Pod", old.clone(), new, &[]);
    let mut new = old.clone();
    new["spec"]["containers"][0]["command"] = json!(["sh"]);
    let errs = validate_update(resource("Pod"), &prepare("Pod", new), &prepare("Pod", old));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0]
            .to_string()
            .starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"),
        "{}",
        errs[0]
    );
}

#[test]
fn config_data_and_labels_are_checked() {
    check(
        "ConfigMap",
        json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "x"}}),
        &[
            "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ],
    );
    check(
        "ConfigMap",
        json!({"metadata": {"name": "c", "namespace": "d", "labels": {"app": "-x"}}}),
        &[
            "metadata.labels: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ],
    );
    let big = "x".repeat(256 * 1024);
    check(
        "Secret",
        json!({"metadata": {"name": "s", "namespace": "d", "annotations": {"a": big}}}),
        &["metadata.annotations: Too long: may not be more than 262144 bytes"],
    );
}

#[test]
fn defaulted_minimal_objects_are_valid() {
    let cases = [
        ("Pod", pod(json!({"containers": [container()]}))),
        (
            "Deployment",
            deployment(json!({"app": "a"}), json!({"app": "a"})),
        ),
        ("Job", job(Some("OnFailure"))),
        ("Namespace", json!({"metadata": {"name": "team-a"}})),
        (
            "Secret",
            json!({"metadata": {"name": "s", "namespace": "d"}, "stringData": {"a": "b"}}),
        ),
        (
            "Service",
            json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        ),
        (
            "StatefulSet",
            json!({"metadata": {"name": "db", "namespace": "d"}, "spec": {"serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [container()]}}}}),
        ),
        (
            "DaemonSet",
            json!({"metadata": {"name": "ds", "namespace": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "ds"}},
            "template": {"metadata": {"labels": {"app": "ds"}}, "spec": {"containers": [container()]}}}}),
        ),
        (
            "ReplicaSet",
            json!({"metadata": {"name": "rs", "namespace": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "rs"}},
            "template": {"metadata": {"labels": {"app": "rs"}}, "spec": {"containers": [container()]}}}}),
        ),
        (
            "ClusterRoleBinding",
            json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}]}),
        ),
        (
            "Lease",
            json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 15}}),
        ),
    ];
    for (kind, object) in cases {
        check(kind, object, &[]);
    }
}

/// Inputs of every shape: defaulting and validation must never panic.
#[test]
fn odd_shapes_never_panic() {
    let shapes = [
        json!(null),
        json!([]),
        json!("x"),
        json!({}),
        json!({"metadata": 5, "spec": "x"}),
        json!({"metadata": {"name": 5, "labels": [1]}, "spec": {"containers": 5, "template": 1, "ports": "x"}}),
        json!({"spec": {"containers": [5, null, {"ports": [1, {"containerPort": "x"}], "resources": {"limits": {"cpu": 7}}}],
            "volumes": [null, {"name": 1}], "selector": {"matchExpressions": [3]},
            "template": {"metadata": {"labels": 3}, "spec": {"containers": [{}]}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": 4}, "updateStrategy": 2,
            "jobTemplate": {"spec": {"template": []}}, "ports": [{"port": "x", "targetPort": []}],
            "schedule": "@every", "clusterIPs": [1, 2, 3]}}),
        json!({"metadata": {"name": "a-", "generateName": "-", "uid": 3}, "data": {"k": 1}, "rules": [{"verbs": 1}],
            "subjects": [1], "roleRef": 2, "status": 3}),
    ];
    for r in resources() {
        for shape in &shapes {
            let mut v = shape.clone();
            apply_defaults(r, &mut v);
            let _ = validate_create(r, &v);
            let _ = validate_update(r, &v, shape);
            let _ = validate_update(r, shape, &v);
        }
    }
}

#[test]
fn ephemeral_containers_may_only_be_added_with_unique_names() {
    let old = pod(json!({"containers": [container()]}));
    let mut new = old.clone();
    new["spec"]["ephemeralContainers"] = json!([{"name": "dbg", "image": "busybox"}]);
    assert!(crate::validate_ephemeral_containers_update(&new, &old).is_empty());
    // Named like the pod's container, with a port, without an image.
    let mut bad = old.clone();
    let own = old["spec"]["containers"][0]["name"].clone();
    bad["spec"]["ephemeralContainers"] =
        json!([{"name": own, "image": "busybox", "ports": [{"containerPort": 80}]}, {"name": "x"}]);
    let errs: Vec<String> = crate::validate_ephemeral_containers_update(&bad, &old)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("spec.ephemeralContainers[0].name: Duplicate value"),
        "{errs:?}"
    );
    assert!(
        errs[1].contains(
            "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container"
        ),
        "{errs:?}"
    );
    assert!(
        errs[2].starts_with("spec.ephemeralContainers[1].image: Required value"),
        "{errs:?}"
    );
    // An existing one may be neither changed nor removed.
    let mut changed = new.clone();
    changed["spec"]["ephemeralContainers"][0]["image"] = json!("other");
    assert_eq!(
        crate::validate_ephemeral_containers_update(&changed, &new).len(),
        1
    );
    let removed = old.clone();
    assert_eq!(
        crate::validate_ephemeral_containers_update(&removed, &new).len(),
        1
    );
    // A plain pod update ignores them (the subresource is their only way in).
    assert!(
        validate_update(
            resource("Pod"),
            &prepare("Pod", new.clone()),
            &prepare("Pod", old.clone())
        )
        .is_empty()
    );
}
