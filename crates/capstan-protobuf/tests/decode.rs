//! Bodies as kubectl sends them: objects encoded with the prost bindings of the upstream `.proto`
//! files (`k8s-pb`), wrapped in the `k8s\0` + `runtime.Unknown` envelope, decoded back to JSON.

use std::collections::BTreeMap;

use capstan_protobuf::{ProtoError, decode, decode_object};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::certificates::v1 as certs;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};

/// The body a Go client sends: magic, then `runtime.Unknown` with empty encoding and type.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn check(api_version: &str, kind: &str, object: &impl Message, want: Value) {
    let body = envelope(api_version, kind, object.encode_to_vec());
    let got = decode(&body).expect("decodes");
    assert_eq!(
        got,
        want,
        "{}",
        serde_json::to_string_pretty(&got).unwrap_or_default()
    );
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn map<V>(entries: &[(&str, V)]) -> BTreeMap<String, V>
where
    V: Clone,
{
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

fn int_or_string_int(v: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(v),
        str_val: Some(String::new()),
    })
}

fn int_or_string_str(v: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(v),
    })
}

/// Metadata as Go writes it: every non-pointer field present, zero or not.
fn go_meta(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        // Go's zero time: written as an empty message.
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

#[test]
fn configmap_with_data_labels_and_creation_timestamp() {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: s("settings"),
            namespace: s("default"),
            labels: map(&[("app", "web".to_owned()), ("tier", String::new())]),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_704_164_645),
                nanos: Some(999),
            }),
            ..Default::default()
        }),
        data: map(&[("a", "b".to_owned()), ("empty", String::new())]),
        ..Default::default()
    };
    check(
        "v1",
        "ConfigMap",
        &cm,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "settings",
                "namespace": "default",
                "labels": {"app": "web", "tier": ""},
                "creationTimestamp": "2024-01-02T03:04:05Z",
            },
            "data": {"a": "b", "empty": ""},
        }),
    );
}

#[test]
fn go_zero_values_of_non_pointer_fields_read_as_unset() {
    // `kubectl create configmap x --from-literal=a=b`: Go writes name, namespace, uid, ... even
    // when empty, and the zero creationTimestamp as an empty message (JSON `null`).
    let cm = core::ConfigMap {
        metadata: Some(go_meta("x", "")),
        data: map(&[("a", "b".to_owned())]),
        ..Default::default()
    };
    check(
        "v1",
        "ConfigMap",
        &cm,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "generation": 0, "creationTimestamp": null},
            "data": {"a": "b"},
        }),
    );
}

#[test]
fn secret_binary_data_is_base64() {
    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: s("tls"),
            ..Default::default()
        }),
        data: map(&[
            ("bin", vec![0u8, 0xff, 0x10, b'\n']),
            ("text", b"hello".to_vec()),
            ("empty", Vec::new()),
        ]),
        r#type: s("Opaque"),
        immutable: Some(false),
        ..Default::default()
    };
    check(
        "v1",
        "Secret",
        &secret,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tls"},
            "data": {"bin": "AP8QCg==", "text": "aGVsbG8=", "empty": ""},
            "type": "Opaque",
            "immutable": false,
        }),
    );
}

fn probe_port(port: Option<IntOrString>) -> Option<core::Probe> {
    Some(core::Probe {
        handler: Some(core::ProbeHandler {
            http_get: Some(core::HttpGetAction {
                path: s("/healthz"),
                port,
                scheme: s("HTTP"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(10),
        ..Default::default()
    })
}

#[test]
fn deployment_with_zero_replicas_template_and_strategy() {
    let labels = map(&[("app", "web".to_owned())]);
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            labels: labels.clone(),
            ..go_meta("web", "default")
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels.clone(),
                    creation_timestamp: Some(meta::Time::default()),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("nginx"),
                        image: s("nginx:1.27"),
                        working_dir: s(""),
                        ports: vec![
                            core::ContainerPort {
                                name: s("http"),
                                container_port: Some(8080),
                                protocol: s("TCP"),
                                ..Default::default()
                            },
                            core::ContainerPort {
                                container_port: Some(9090),
                                ..Default::default()
                            },
                        ],
                        env: vec![core::EnvVar {
                            name: s("MODE"),
                            value: s("prod"),
                            ..Default::default()
                        }],
                        resources: Some(core::ResourceRequirements {
                            requests: map(&[
                                ("cpu", quantity("100m")),
                                ("memory", quantity("64Mi")),
                            ]),
                            limits: map(&[("memory", quantity("128Mi"))]),
                            ..Default::default()
                        }),
                        liveness_probe: probe_port(int_or_string_str("http")),
                        readiness_probe: probe_port(int_or_string_int(8080)),
                        termination_message_path: s(""),
                        image_pull_policy: s(""),
                        stdin: Some(false),
                        ..Default::default()
                    }],
                    restart_policy: s(""),
                    node_name: s(""),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: int_or_string_int(0),
                    max_surge: int_or_string_str("25%"),
                }),
            }),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    let probe = |port: Value| {
        json!({
            "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
        })
    };
    check(
        "apps/v1",
        "Deployment",
        &deployment,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "generation": 0,
                "creationTimestamp": null,
                "labels": {"app": "web"},
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "ports": [
                                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                                {"containerPort": 9090},
                            ],
                            "env": [{"name": "MODE", "value": "prod"}],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "64Mi"},
                                "limits": {"memory": "128Mi"},
                            },
                            "livenessProbe": probe(json!("http")),
                            "readinessProbe": probe(json!(8080)),
                            "stdin": false,
                        }],
                    },
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
                },
            },
            "status": {},
        }),
    );
}

#[test]
fn eviction_with_delete_options() {
    let eviction = policy::Eviction {
        metadata: Some(meta::ObjectMeta {
            name: s("web-0"),
            namespace: s("default"),
            ..Default::default()
        }),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Some(meta::Preconditions {
                uid: s("1234"),
                resource_version: None,
            }),
            dry_run: vec!["All".to_owned()],
            ..Default::default()
        }),
    };
    check(
        "policy/v1",
        "Eviction",
        &eviction,
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-0", "namespace": "default"},
            "deleteOptions": {
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "1234"},
                "dryRun": ["All"],
            },
        }),
    );
}

#[test]
fn self_subject_review_with_user_info_extra() {
    let review = authn::SelfSubjectReview {
        metadata: Some(go_meta("", "")),
        status: Some(authn::SelfSubjectReviewStatus {
            user_info: Some(authn::UserInfo {
                username: s("admin"),
                uid: s(""),
                groups: vec![
                    "system:masters".to_owned(),
                    "system:authenticated".to_owned(),
                ],
                extra: map(&[(
                    "scopes",
                    authn::ExtraValue {
                        items: vec!["a".to_owned(), "b".to_owned()],
                    },
                )]),
            }),
        }),
    };
    check(
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &review,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "metadata": {"generation": 0, "creationTimestamp": null},
            "status": {"userInfo": {
                "username": "admin",
                "groups": ["system:masters", "system:authenticated"],
                "extra": {"scopes": ["a", "b"]},
            }},
        }),
    );
}

#[test]
fn certificate_signing_request_with_request_bytes_usages_and_conditions() {
    let pem = b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
    let csr = certs::CertificateSigningRequest {
        metadata: Some(meta::ObjectMeta {
            name: s("node-csr"),
            uid: s("5f1c"),
            resource_version: s("42"),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(certs::CertificateSigningRequestSpec {
            request: Some(pem.to_vec()),
            signer_name: s("kubernetes.io/kube-apiserver-client-kubelet"),
            expiration_seconds: Some(86_400),
            usages: vec!["digital signature".to_owned(), "client auth".to_owned()],
            username: s("system:node:n1"),
            ..Default::default()
        }),
        status: Some(certs::CertificateSigningRequestStatus {
            conditions: vec![certs::CertificateSigningRequestCondition {
                r#type: s("Approved"),
                status: s("True"),
                reason: s("KubectlApprove"),
                message: s("This CSR was approved by kubectl certificate approve."),
                last_update_time: Some(meta::Time {
                    seconds: Some(1_700_000_060),
                    nanos: Some(0),
                }),
                last_transition_time: Some(meta::Time::default()),
            }],
            certificate: None,
        }),
    };
    check(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &csr,
        json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {
                "name": "node-csr",
                "uid": "5f1c",
                "resourceVersion": "42",
                "creationTimestamp": "2023-11-14T22:13:20Z",
            },
            "spec": {
                "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlJQgotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "expirationSeconds": 86400,
                "usages": ["digital signature", "client auth"],
                "username": "system:node:n1",
            },
            "status": {"conditions": [{
                "type": "Approved",
                "status": "True",
                "reason": "KubectlApprove",
                "message": "This CSR was approved by kubectl certificate approve.",
                "lastUpdateTime": "2023-11-14T22:14:20Z",
                "lastTransitionTime": null,
            }]},
        }),
    );
}

#[test]
fn namespace_with_finalizers() {
    let ns = core::Namespace {
        metadata: Some(go_meta("team-a", "")),
        spec: Some(core::NamespaceSpec {
            finalizers: vec!["kubernetes".to_owned()],
        }),
        status: Some(core::NamespaceStatus::default()),
    };
    check(
        "v1",
        "Namespace",
        &ns,
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "team-a", "generation": 0, "creationTimestamp": null},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {},
        }),
    );
}

#[test]
fn service_with_cluster_ips_and_int_or_string_target_port() {
    let svc = core::Service {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            ..Default::default()
        }),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: s("http"),
                protocol: s("TCP"),
                port: Some(80),
                target_port: int_or_string_int(8080),
                node_port: Some(0),
                ..Default::default()
            }],
            selector: map(&[("app", "web".to_owned())]),
            cluster_ip: s("None"),
            cluster_ips: vec!["None".to_owned()],
            r#type: s("ClusterIP"),
            ..Default::default()
        }),
        status: None,
    };
    check(
        "v1",
        "Service",
        &svc,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 0}],
                "selector": {"app": "web"},
                "clusterIP": "None",
                "clusterIPs": ["None"],
                "type": "ClusterIP",
            },
        }),
    );
}

#[test]
fn token_request_with_expiration_and_bound_object() {
    let request = authn::TokenRequest {
        metadata: Some(meta::ObjectMeta {
            name: s("builder"),
            namespace: s("ci"),
            ..Default::default()
        }),
        spec: Some(authn::TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc".to_owned()],
            expiration_seconds: Some(3600),
            bound_object_ref: Some(authn::BoundObjectReference {
                kind: s("Pod"),
                api_version: s("v1"),
                name: s("p"),
                u_id: s("u1"),
            }),
        }),
        status: Some(authn::TokenRequestStatus {
            token: s(""),
            expiration_timestamp: Some(meta::Time::default()),
        }),
    };
    check(
        "authentication.k8s.io/v1",
        "TokenRequest",
        &request,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": "builder", "namespace": "ci"},
            "spec": {
                "audiences": ["https://kubernetes.default.svc"],
                "expirationSeconds": 3600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u1"},
            },
            "status": {"expirationTimestamp": null},
        }),
    );
}

#[test]
fn delete_options_in_meta_and_in_a_group_version() {
    let options = meta::DeleteOptions {
        propagation_policy: s("Foreground"),
        orphan_dependents: None,
        grace_period_seconds: Some(30),
        ..Default::default()
    };
    check(
        "meta.k8s.io/v1",
        "DeleteOptions",
        &options,
        json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 30,
            "propagationPolicy": "Foreground",
        }),
    );
    // The option kinds are registered in every group-version.
    check(
        "apps/v1",
        "DeleteOptions",
        &options,
        json!({
            "apiVersion": "apps/v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 30,
            "propagationPolicy": "Foreground",
        }),
    );
}

#[test]
fn job_with_zero_backoff_limit_and_inlined_volume_source() {
    let job = k8s_pb::api::batch::v1::Job {
        metadata: Some(meta::ObjectMeta {
            name: s("pi"),
            ..Default::default()
        }),
        spec: Some(k8s_pb::api::batch::v1::JobSpec {
            backoff_limit: Some(0),
            template: Some(core::PodTemplateSpec {
                metadata: None,
                spec: Some(core::PodSpec {
                    restart_policy: s("Never"),
                    volumes: vec![core::Volume {
                        name: s("cfg"),
                        volume_source: Some(core::VolumeSource {
                            config_map: Some(core::ConfigMapVolumeSource {
                                local_object_reference: Some(core::LocalObjectReference {
                                    name: s("settings"),
                                }),
                                default_mode: Some(0o644),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    check(
        "batch/v1",
        "Job",
        &job,
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "pi"},
            "spec": {
                "backoffLimit": 0,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "volumes": [{"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}}],
                }},
            },
        }),
    );
}

#[test]
fn micro_time_duration_and_raw_extension_use_their_json_forms() {
    let lease = k8s_pb::api::coordination::v1::Lease {
        metadata: Some(meta::ObjectMeta {
            name: s("node-1"),
            ..Default::default()
        }),
        spec: Some(k8s_pb::api::coordination::v1::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_704_164_645),
                nanos: Some(123_456_789),
            }),
            ..Default::default()
        }),
    };
    check(
        "coordination.k8s.io/v1",
        "Lease",
        &lease,
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "node-1"},
            "spec": {
                "holderIdentity": "node-1",
                "leaseDurationSeconds": 40,
                "renewTime": "2024-01-02T03:04:05.123456Z",
            },
        }),
    );
    let revision = apps::ControllerRevision {
        metadata: Some(meta::ObjectMeta {
            name: s("web-1"),
            ..Default::default()
        }),
        data: Some(k8s_pb::apimachinery::pkg::runtime::RawExtension {
            raw: Some(br#"{"spec":{"template":{"x":1}}}"#.to_vec()),
        }),
        revision: Some(1),
    };
    check(
        "apps/v1",
        "ControllerRevision",
        &revision,
        json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": "web-1"},
            "data": {"spec": {"template": {"x": 1}}},
            "revision": 1,
        }),
    );
    let fc = k8s_pb::api::flowcontrol::v1::LimitedPriorityLevelConfiguration {
        nominal_concurrency_shares: Some(30),
        ..Default::default()
    };
    let got = decode_object(
        "flowcontrol.apiserver.k8s.io/v1",
        "LimitedPriorityLevelConfiguration",
        &fc.encode_to_vec(),
    )
    .expect("decodes");
    assert_eq!(got["nominalConcurrencyShares"], json!(30));
}

#[test]
fn managed_fields_carry_their_embedded_json() {
    let meta_with_fields = meta::ObjectMeta {
        name: s("x"),
        managed_fields: vec![meta::ManagedFieldsEntry {
            manager: s("kubectl"),
            operation: s("Update"),
            api_version: s("v1"),
            fields_type: s("FieldsV1"),
            fields_v1: Some(meta::FieldsV1 {
                raw: Some(br#"{"f:data":{"f:a":{}}}"#.to_vec()),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let cm = core::ConfigMap {
        metadata: Some(meta_with_fields),
        ..Default::default()
    };
    check(
        "v1",
        "ConfigMap",
        &cm,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "managedFields": [{
                "manager": "kubectl",
                "operation": "Update",
                "apiVersion": "v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {"f:a": {}}},
            }]},
        }),
    );
}

#[test]
fn unknown_fields_are_skipped() {
    let mut raw = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: s("x"),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 99 of every wire type, then a known field again.
    raw.extend([0x98, 0x06, 0x96, 0x01]); // varint
    raw.extend([0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]); // fixed64
    raw.extend([0x9a, 0x06, 2, 0xde, 0xad]); // length-delimited
    raw.extend([0x9d, 0x06, 1, 2, 3, 4]); // fixed32
    raw.extend([0x12, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v']); // data {k: v}
    let got = decode(&envelope("v1", "ConfigMap", raw)).expect("decodes");
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v"}})
    );
}

#[test]
fn malformed_bodies_are_errors() {
    let good = envelope(
        "v1",
        "Namespace",
        core::Namespace::default().encode_to_vec(),
    );
    assert!(decode(&good).is_ok());

    assert!(matches!(
        decode(b"{\"kind\":\"Namespace\"}"),
        Err(ProtoError::NotProtobuf)
    ));
    assert!(matches!(decode(b"k8s"), Err(ProtoError::NotProtobuf)));
    assert!(matches!(decode(b"k9s\0"), Err(ProtoError::NotProtobuf)));
    // Truncated varint in the envelope key.
    assert!(matches!(decode(b"k8s\0\x80"), Err(ProtoError::Truncated)));
    // Length beyond the buffer.
    assert!(matches!(
        decode(b"k8s\0\x0a\x10\x0a"),
        Err(ProtoError::Truncated)
    ));
    // Every truncation of a valid body fails cleanly or decodes, never panics.
    let deployment = envelope(
        "apps/v1",
        "Deployment",
        apps::Deployment {
            metadata: Some(go_meta("web", "default")),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(3),
                ..Default::default()
            }),
            status: None,
        }
        .encode_to_vec(),
    );
    for end in 0..deployment.len() {
        let _ = decode(&deployment[..end]);
    }
    // Unknown kinds and versions.
    let raw = core::Namespace::default().encode_to_vec();
    assert!(matches!(
        decode(&envelope("v1", "Frobnicator", raw.clone())),
        Err(ProtoError::UnknownKind { .. })
    ));
    assert!(matches!(
        decode(&envelope("example.com/v1", "Namespace", raw.clone())),
        Err(ProtoError::UnknownKind { .. })
    ));
    assert!(matches!(
        decode(&envelope("", "", raw)),
        Err(ProtoError::MissingTypeMeta)
    ));
    // A string field that is not UTF-8, and a string field sent as a varint.
    let bad_utf8 = vec![0x0a, 0x03, 0x0a, 0x01, 0xff];
    assert!(matches!(
        decode(&envelope("v1", "ConfigMap", bad_utf8)),
        Err(ProtoError::InvalidUtf8 { .. })
    ));
    let wrong_wire = vec![0x0a, 0x02, 0x08, 0x01];
    assert!(matches!(
        decode(&envelope("v1", "ConfigMap", wrong_wire)),
        Err(ProtoError::WireType { tag: 1, wire: 0 })
    ));
    // Bad embedded JSON in a RawExtension.
    let revision = apps::ControllerRevision {
        data: Some(k8s_pb::apimachinery::pkg::runtime::RawExtension {
            raw: Some(b"{not json".to_vec()),
        }),
        ..Default::default()
    };
    assert!(matches!(
        decode(&envelope(
            "apps/v1",
            "ControllerRevision",
            revision.encode_to_vec()
        )),
        Err(ProtoError::EmbeddedJson(_))
    ));
    // Compressed payloads are refused rather than misread.
    let mut unknown = Unknown::decode(&good[4..]).expect("envelope");
    unknown.content_encoding = s("gzip");
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    assert!(matches!(decode(&body), Err(ProtoError::ContentEncoding(e)) if e == "gzip"));
}

#[test]
fn deeply_nested_messages_are_refused_not_overflowed() {
    // JSONSchemaProps.not is itself a JSONSchemaProps: nest it far deeper than any real schema.
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let mut schema = ext::JsonSchemaProps {
        r#type: s("string"),
        ..Default::default()
    };
    for _ in 0..150 {
        schema = ext::JsonSchemaProps {
            not: Some(Box::new(schema)),
            ..Default::default()
        };
    }
    let got = decode_object(
        "apiextensions.k8s.io/v1",
        "JsonSchemaProps",
        &schema.encode_to_vec(),
    );
    assert!(matches!(got, Err(ProtoError::TooDeep)));

    let mut shallow = ext::JsonSchemaProps {
        r#type: s("string"),
        ..Default::default()
    };
    shallow = ext::JsonSchemaProps {
        not: Some(Box::new(shallow)),
        ..Default::default()
    };
    let got = decode_object(
        "apiextensions.k8s.io/v1",
        "JsonSchemaProps",
        &shallow.encode_to_vec(),
    )
    .expect("decodes");
    assert_eq!(got["not"], json!({"type": "string"}));
}

#[test]
fn empty_storage_class_name_is_kept_because_it_means_no_class() {
    let pvc = core::PersistentVolumeClaim {
        metadata: Some(go_meta("data", "default")),
        spec: Some(core::PersistentVolumeClaimSpec {
            access_modes: vec!["ReadWriteOnce".to_owned()],
            storage_class_name: s(""),
            volume_name: s(""),
            resources: Some(core::VolumeResourceRequirements {
                requests: map(&[("storage", quantity("1Gi"))]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    check(
        "v1",
        "PersistentVolumeClaim",
        &pvc,
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "default", "generation": 0, "creationTimestamp": null},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }),
    );
}
