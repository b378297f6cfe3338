//! Defaults of minimal objects, compared with what kube-apiserver 1.33 returns for them (less
//! the fields other parts of the server own: uid, timestamps, cluster IPs, admission-added
//! tolerations and the service-account token volume).

use serde_json::{Value, json};

use crate::decode::{FieldValidation, decode_value};
use crate::defaults::apply_defaults;
use crate::registry::resources;

fn defaulted(kind: &str, object: Value) -> Value {
    let r = resources()
        .iter()
        .find(|r| r.kind == kind)
        .expect("kind is registered");
    let mut object = decode_value(r, object, FieldValidation::Ignore)
        .expect("decodes")
        .object;
    apply_defaults(r, &mut object);
    // Defaulting twice changes nothing (the server defaults again on every read and update).
    let mut again = object.clone();
    apply_defaults(r, &mut again);
    assert_eq!(again, object, "{kind} defaults are not idempotent");
    object
}

fn check(kind: &str, object: Value, pointer: &str, expected: Value) {
    let got = defaulted(kind, object);
    assert_eq!(
        got.pointer(pointer),
        Some(&expected),
        "{kind}{pointer}: {got:#}"
    );
}

fn defaulted_container(image: &str, policy: &str) -> Value {
    json!({"name": "c", "image": image, "imagePullPolicy": policy, "resources": {},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"})
}

#[test]
fn minimal_pod() {
    check(
        "Pod",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
        "/spec",
        json!({
            "containers": [defaulted_container("nginx", "Always")],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30
        }),
    );
}

#[test]
fn pod_details() {
    let pod = json!({"metadata": {"name": "p"}, "spec": {"hostNetwork": true, "containers": [{
        "name": "c", "image": "nginx:1.27",
        "ports": [{"containerPort": 80}],
        "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}},
        "livenessProbe": {"httpGet": {"port": 80}}
    }], "volumes": [{"name": "a"}, {"name": "b", "secret": {"secretName": "s"}}]}});
    let got = defaulted("Pod", pod);
    let c = &got["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        c["ports"][0],
        json!({"containerPort": 80, "hostPort": 80, "protocol": "TCP"})
    );
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    assert_eq!(
        c["resources"],
        json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}})
    );
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"}, "timeoutSeconds": 1,
            "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(
        got["spec"]["volumes"][0],
        json!({"name": "a", "emptyDir": {}})
    );
    assert_eq!(got["spec"]["volumes"][1]["secret"]["defaultMode"], 420);
}

#[test]
fn minimal_deployment() {
    check(
        "Deployment",
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        "/spec",
        json!({
            "progressDeadlineSeconds": 600,
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [defaulted_container("nginx", "Always")],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30
                }
            }
        }),
    );
}

#[test]
fn minimal_service() {
    check(
        "Service",
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        "/spec",
        json!({
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "selector": {"app": "web"},
            "sessionAffinity": "None",
            "type": "ClusterIP"
        }),
    );
    let lb = defaulted(
        "Service",
        json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": "http"}]}}),
    );
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(lb["spec"]["ports"][0]["targetPort"], "http");
}

#[test]
fn minimal_job() {
    let labels = json!({
        "batch.kubernetes.io/controller-uid": "u-1",
        "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "u-1",
        "job-name": "pi"
    });
    let got = defaulted(
        "Job",
        json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {
            "containers": [{"name": "pi", "image": "perl:5.34"}], "restartPolicy": "Never"}}}}),
    );
    assert_eq!(got["metadata"]["labels"], labels);
    let mut pi = defaulted_container("perl:5.34", "IfNotPresent");
    pi["name"] = json!("pi");
    assert_eq!(
        got["spec"],
        json!({
            "backoffLimit": 6,
            "completionMode": "NonIndexed",
            "completions": 1,
            "manualSelector": false,
            "parallelism": 1,
            "podReplacementPolicy": "TerminatingOrFailed",
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}},
            "suspend": false,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [pi],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Never",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30
                }
            }
        })
    );
}

#[test]
fn other_kinds() {
    check(
        "Secret",
        json!({"metadata": {"name": "s"}}),
        "/type",
        json!("Opaque"),
    );
    let ns = defaulted("Namespace", json!({"metadata": {"name": "team-a"}}));
    assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
    assert_eq!(ns["status"], json!({"phase": "Active"}));
    assert_eq!(
        ns["metadata"]["labels"],
        json!({"kubernetes.io/metadata.name": "team-a"})
    );
    check(
        "StatefulSet",
        json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "selector": {"matchLabels": {"a": "b"}},
            "template": {"spec": {"containers": []}}}}),
        "/spec/updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
    );
    check(
        "StatefulSet",
        json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "selector": {},
            "template": {"spec": {"containers": []}}}}),
        "/spec/persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    check(
        "DaemonSet",
        json!({"metadata": {"name": "ds"}, "spec": {"selector": {}, "template": {"spec": {"containers": []}}}}),
        "/spec/updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
    );
    let cj = defaulted(
        "CronJob",
        json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily", "jobTemplate": {"spec": {
            "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}}}),
    );
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["suspend"], false);
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );
    check(
        "RoleBinding",
        json!({"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "Group", "name": "g"}]}),
        "/subjects/0/apiGroup",
        json!("rbac.authorization.k8s.io"),
    );
}

#[test]
fn network_policy_types_follow_its_rules_and_ports_default_to_tcp() {
    let ingress_only = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "a"}, "spec": {"podSelector": {}}});
    check(
        "NetworkPolicy",
        ingress_only,
        "/spec/policyTypes",
        json!(["Ingress"]),
    );
    let with_egress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "b"}, "spec": {"podSelector": {},
            "egress": [{"ports": [{"port": 53}]}]}});
    let got = defaulted("NetworkPolicy", with_egress);
    assert_eq!(got["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(got["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    // Types the user gave stay as given.
    let explicit = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "c"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}});
    check(
        "NetworkPolicy",
        explicit,
        "/spec/policyTypes",
        json!(["Egress"]),
    );
}

#[test]
fn volumes_claims_and_storage_classes_get_kubernetes_defaults() {
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "v"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/x"}}});
    let got = defaulted("PersistentVolume", pv);
    assert_eq!(got["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(got["spec"]["volumeMode"], "Filesystem");
    assert_eq!(got["status"]["phase"], "Pending");
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
            "volumeMode": "Block"}, "status": {"phase": "Bound"}});
    let got = defaulted("PersistentVolumeClaim", pvc);
    assert_eq!(got["spec"]["volumeMode"], "Block");
    assert_eq!(got["status"]["phase"], "Bound");
    let sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "s"}, "provisioner": "example.com/p"});
    let got = defaulted("StorageClass", sc);
    assert_eq!(got["reclaimPolicy"], "Delete");
    assert_eq!(got["volumeBindingMode"], "Immediate");
}
