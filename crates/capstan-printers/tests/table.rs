//! The tables kube-apiserver 1.32 returns for realistic objects, cell for cell.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capstan_api::ResourceInfo;
use capstan_printers::{IncludeObject, table};
use serde_json::{Value, json};

/// 2024-05-01T12:00:00Z.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_714_564_800)
}

fn resource(group: &str, plural: &str) -> &'static ResourceInfo {
    capstan_api::find(group, "v1", plural).expect("resource is registered")
}

fn build(group: &str, plural: &str, objects: &[Value], include: IncludeObject) -> Value {
    table(resource(group, plural), objects, json!({}), include, now())
}

/// The cells of the single row printed for `object`.
fn cells(group: &str, plural: &str, object: Value) -> Value {
    let t = build(group, plural, &[object], IncludeObject::None);
    t["rows"][0]["cells"].clone()
}

fn column_names(group: &str, plural: &str) -> Vec<(String, i64)> {
    build(group, plural, &[], IncludeObject::None)["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_owned(),
                c["priority"].as_i64().expect("priority"),
            )
        })
        .collect()
}

fn pod(status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2024-05-01T11:55:00Z"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "nginx:1.27"}]},
        "status": status,
    })
}

/// The Ready, Status and Restarts cells of a pod.
type Expected = (&'static str, &'static str, &'static str);

fn pod_cells(pod: Value) -> (String, String, String) {
    let c = cells("", "pods", pod);
    let s = |i: usize| c[i].as_str().expect("string cell").to_owned();
    (s(1), s(2), s(3))
}

#[test]
fn running_ready_pod() {
    let p = pod(json!({
        "phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}],
        "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "web", "ready": true, "started": true, "restartCount": 0,
            "image": "nginx:1.27", "state": {"running": {"startedAt": "2024-05-01T11:55:03Z"}}}]
    }));
    assert_eq!(
        cells("", "pods", p),
        json!([
            "web-1",
            "1/1",
            "Running",
            "0",
            "5m",
            "10.42.0.5",
            "node-1",
            "<none>",
            "<none>"
        ])
    );
}

#[test]
fn crash_looping_pod_shows_restarts_and_when() {
    let p = json!({
        "metadata": {"name": "api-7d9f", "creationTimestamp": "2024-04-29T09:00:00Z"},
        "spec": {"nodeName": "node-2", "containers": [{"name": "api", "image": "api:2"}, {"name": "proxy", "image": "envoy"}],
                 "readinessGates": [{"conditionType": "example.com/lb"}]},
        "status": {
            "phase": "Running", "podIPs": [{"ip": "10.42.1.9"}], "nominatedNodeName": "",
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "example.com/lb", "status": "True"}],
            "containerStatuses": [
                {"name": "api", "ready": false, "restartCount": 3,
                 "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T11:55:00Z"}}},
                {"name": "proxy", "ready": true, "restartCount": 1, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 137, "finishedAt": "2024-04-30T12:00:00Z"}}}
            ]
        }
    });
    assert_eq!(
        cells("", "pods", p),
        json!([
            "api-7d9f",
            "1/2",
            "CrashLoopBackOff",
            "4 (5m ago)",
            "2d3h",
            "10.42.1.9",
            "node-2",
            "<none>",
            "1/1"
        ])
    );
}

#[test]
fn completed_pod_has_a_completed_row_condition() {
    let p = pod(json!({
        "phase": "Succeeded",
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2024-05-01T11:58:00Z"}}}]
    }));
    let t = build("", "pods", &[p], IncludeObject::None);
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "web-1",
            "0/1",
            "Completed",
            "0",
            "5m",
            "<none>",
            "node-1",
            "<none>",
            "<none>"
        ])
    );
    assert_eq!(
        t["rows"][0]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
    );
}

#[test]
fn pod_status_reasons() {
    let running = json!({"running": {}});
    let cases: Vec<(&str, Value, Value, Expected)> = vec![
        (
            "pending, no statuses",
            json!({"phase": "Pending"}),
            json!({}),
            ("0/1", "Pending", "0"),
        ),
        (
            "container creating",
            json!({"phase": "Pending", "containerStatuses": [{"name": "web", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
            json!({}),
            ("0/1", "ContainerCreating", "0"),
        ),
        (
            "image pull back-off",
            json!({"phase": "Pending", "containerStatuses": [{"name": "web", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
            json!({}),
            ("0/1", "ImagePullBackOff", "0"),
        ),
        (
            "err image pull",
            json!({"phase": "Pending", "containerStatuses": [{"name": "web", "state": {"waiting": {"reason": "ErrImagePull"}}}]}),
            json!({}),
            ("0/1", "ErrImagePull", "0"),
        ),
        (
            "oom killed",
            json!({"phase": "Running", "containerStatuses": [{"name": "web", "restartCount": 1,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2024-05-01T11:59:30Z"}}}]}),
            json!({}),
            ("0/1", "OOMKilled", "1 (30s ago)"),
        ),
        (
            "failed with error",
            json!({"phase": "Failed", "containerStatuses": [{"name": "web", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
            json!({}),
            ("0/1", "Error", "0"),
        ),
        (
            "killed by a signal, no reason",
            json!({"phase": "Running", "containerStatuses": [{"name": "web", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}),
            json!({}),
            ("0/1", "Signal:9", "0"),
        ),
        (
            "exit code, no reason",
            json!({"phase": "Running", "containerStatuses": [{"name": "web", "state": {"terminated": {"exitCode": 2}}}]}),
            json!({}),
            ("0/1", "ExitCode:2", "0"),
        ),
        (
            "terminating",
            json!({"phase": "Running", "containerStatuses": [{"name": "web", "ready": true, "state": running.clone()}]}),
            json!({"deletionTimestamp": "2024-05-01T11:59:50Z", "deletionGracePeriodSeconds": 30}),
            ("1/1", "Terminating", "0"),
        ),
        (
            "terminating after success stays Completed",
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "web", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
            json!({"deletionTimestamp": "2024-05-01T11:59:50Z"}),
            ("0/1", "Completed", "0"),
        ),
        (
            "node lost",
            json!({"phase": "Running", "reason": "NodeLost"}),
            json!({"deletionTimestamp": "2024-05-01T11:59:50Z"}),
            ("0/1", "Unknown", "0"),
        ),
        (
            "evicted",
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
            json!({}),
            ("0/1", "Evicted", "0"),
        ),
        (
            "scheduling gated",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            json!({}),
            ("0/1", "SchedulingGated", "0"),
        ),
    ];
    for (what, status, extra_metadata, want) in cases {
        let mut p = pod(status);
        for (k, v) in extra_metadata.as_object().expect("object") {
            p["metadata"][k] = v.clone();
        }
        let (ready, reason, restarts) = pod_cells(p);
        assert_eq!(
            (ready.as_str(), reason.as_str(), restarts.as_str()),
            want,
            "{what}"
        );
    }
}

#[test]
fn completed_container_beside_a_running_one() {
    let statuses = json!([
        {"name": "main", "ready": true, "state": {"running": {}}},
        {"name": "job", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    ]);
    let mut p = pod(
        json!({"phase": "Running", "containerStatuses": statuses, "conditions": [{"type": "Ready", "status": "True"}]}),
    );
    p["spec"]["containers"] = json!([{"name": "main"}, {"name": "job"}]);
    assert_eq!(
        pod_cells(p.clone()),
        ("1/2".into(), "Running".into(), "0".into())
    );
    p["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    assert_eq!(pod_cells(p).1, "NotReady");
}

fn init_pod(init_statuses: Value, container_statuses: Value, conditions: Value) -> Value {
    json!({
        "metadata": {"name": "db-0", "creationTimestamp": "2024-05-01T11:59:00Z"},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "db:1"}, {"name": "seed", "image": "db:1"}],
            "containers": [{"name": "db", "image": "db:1"}]
        },
        "status": {"phase": "Pending", "initContainerStatuses": init_statuses,
                   "containerStatuses": container_statuses, "conditions": conditions}
    })
}

#[test]
fn init_container_pods() {
    let done = json!({"name": "migrate", "ready": true, "restartCount": 0,
                      "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
    let waiting_main = json!([{"name": "db", "ready": false, "state": {"waiting": {"reason": "PodInitializing"}}}]);
    let cases = vec![
        (
            "second init container running",
            json!([done.clone(), {"name": "seed", "restartCount": 0, "state": {"running": {}}}]),
            ("0/1", "Init:1/2", "0"),
        ),
        (
            "first init container waiting to start",
            json!([{"name": "migrate", "state": {"waiting": {"reason": "PodInitializing"}}},
                   {"name": "seed", "state": {"waiting": {"reason": "PodInitializing"}}}]),
            ("0/1", "Init:0/2", "0"),
        ),
        (
            "init container failed",
            json!([{"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]),
            ("0/1", "Init:Error", "0"),
        ),
        (
            "init container crash looping",
            json!([{"name": "migrate", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T11:58:00Z"}}}]),
            ("0/1", "Init:CrashLoopBackOff", "4 (2m ago)"),
        ),
        (
            "init container killed without reason",
            json!([{"name": "migrate", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]),
            ("0/1", "Init:Signal:9", "0"),
        ),
        (
            "init container exited without reason",
            json!([{"name": "migrate", "state": {"terminated": {"exitCode": 3}}}]),
            ("0/1", "Init:ExitCode:3", "0"),
        ),
    ];
    for (what, init_statuses, want) in cases {
        let (ready, reason, restarts) =
            pod_cells(init_pod(init_statuses, waiting_main.clone(), json!([])));
        assert_eq!(
            (ready.as_str(), reason.as_str(), restarts.as_str()),
            want,
            "{what}"
        );
    }
}

#[test]
fn sidecar_init_containers_count_as_containers() {
    let mut p = init_pod(
        json!([{"name": "migrate", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
               {"name": "seed", "started": true, "ready": true, "restartCount": 2, "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:40Z"}}}]),
        json!([{"name": "db", "ready": true, "restartCount": 0, "state": {"running": {}}}]),
        json!([{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}]),
    );
    p["spec"]["initContainers"][1]["restartPolicy"] = json!("Always");
    p["status"]["phase"] = json!("Running");
    assert_eq!(
        pod_cells(p),
        ("2/2".into(), "Running".into(), "2 (20s ago)".into())
    );
}

#[test]
fn pod_wide_columns_are_priority_one() {
    let names = column_names("", "pods");
    let expected = [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ];
    assert_eq!(names, expected.map(|(n, p)| (n.to_owned(), p)).to_vec());
    let t = build("", "pods", &[], IncludeObject::None);
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(t["columnDefinitions"][3]["type"], "string");
    assert!(
        t["columnDefinitions"][0]["description"]
            .as_str()
            .expect("description")
            .starts_with("Name must be unique")
    );
}

#[test]
fn deployment_mid_rollout() {
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T09:00:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "fluent-bit:3"}]}}},
        "status": {"replicas": 4, "readyReplicas": 2, "updatedReplicas": 1, "availableReplicas": 2, "unavailableReplicas": 2}
    });
    assert_eq!(
        cells("apps", "deployments", d),
        json!([
            "web",
            "2/3",
            1,
            2,
            "3h",
            "web,log",
            "nginx:1.27,fluent-bit:3",
            "app=web"
        ])
    );
}

#[test]
fn workload_tables() {
    let template = json!({"spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let cases = vec![
        (
            ("apps", "replicasets"),
            json!({"metadata": {"name": "web-5d8f", "creationTimestamp": "2024-05-01T11:00:00Z"},
                   "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f"}}, "template": template},
                   "status": {"replicas": 3, "readyReplicas": 1}}),
            json!([
                "web-5d8f",
                3,
                3,
                1,
                "60m",
                "c",
                "busybox",
                "app=web,pod-template-hash=5d8f"
            ]),
        ),
        (
            ("apps", "statefulsets"),
            json!({"metadata": {"name": "db", "creationTimestamp": "2024-05-01T11:58:30Z"},
                   "spec": {"template": template}, "status": {"readyReplicas": 1}}),
            json!(["db", "1/1", "90s", "c", "busybox"]),
        ),
        (
            ("apps", "daemonsets"),
            json!({"metadata": {"name": "proxy", "creationTimestamp": "2024-04-01T12:00:00Z"},
                   "spec": {"selector": {"matchLabels": {"k8s-app": "proxy"}},
                            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "c", "image": "busybox"}]}}},
                   "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}}),
            json!([
                "proxy",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "30d",
                "c",
                "busybox",
                "k8s-app=proxy"
            ]),
        ),
        (
            ("batch", "jobs"),
            json!({"metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:50:00Z"},
                   "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}}, "template": template},
                   "status": {"succeeded": 1, "startTime": "2024-05-01T11:50:00Z", "completionTime": "2024-05-01T11:50:14Z",
                              "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}}),
            json!([
                "pi",
                "Complete",
                "1/1",
                "14s",
                "10m",
                "c",
                "busybox",
                "batch.kubernetes.io/controller-uid=abc"
            ]),
        ),
        (
            ("batch", "jobs"),
            json!({"metadata": {"name": "work", "creationTimestamp": "2024-05-01T11:57:00Z"},
                   "spec": {"parallelism": 3, "template": template},
                   "status": {"succeeded": 0, "startTime": "2024-05-01T11:57:00Z"}}),
            json!([
                "work", "Running", "0/1 of 3", "3m", "3m", "c", "busybox", "<none>"
            ]),
        ),
        (
            ("batch", "cronjobs"),
            json!({"metadata": {"name": "backup", "creationTimestamp": "2024-04-30T12:00:00Z"},
                   "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}},
                   "status": {"active": [{"name": "backup-28573"}], "lastScheduleTime": "2024-05-01T11:55:00Z"}}),
            json!([
                "backup",
                "*/5 * * * *",
                "<none>",
                "False",
                1,
                "5m",
                "24h",
                "c",
                "busybox",
                "<none>"
            ]),
        ),
        (
            ("batch", "cronjobs"),
            json!({"metadata": {"name": "report", "creationTimestamp": "2024-04-30T12:00:00Z"},
                   "spec": {"schedule": "@daily", "timeZone": "Europe/Paris", "suspend": true, "jobTemplate": {"spec": {"template": template}}}}),
            json!([
                "report",
                "@daily",
                "Europe/Paris",
                "True",
                0,
                "<none>",
                "24h",
                "c",
                "busybox",
                "<none>"
            ]),
        ),
        (
            ("apps", "controllerrevisions"),
            json!({"metadata": {"name": "db-7f9c", "creationTimestamp": "2024-05-01T11:00:00Z",
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]},
                   "revision": 2}),
            json!(["db-7f9c", "statefulset.apps/db", 2, "60m"]),
        ),
    ];
    for ((group, plural), object, want) in cases {
        assert_eq!(cells(group, plural, object), want, "{plural}");
    }
}

#[test]
fn node_port_service() {
    let s = json!({
        "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:59:55Z"},
        "spec": {"type": "NodePort", "clusterIP": "10.43.12.7", "clusterIPs": ["10.43.12.7"], "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                           {"name": "dns", "port": 53, "nodePort": 30053, "protocol": "UDP"}]}
    });
    assert_eq!(
        cells("", "services", s),
        json!([
            "web",
            "NodePort",
            "10.43.12.7",
            "<none>",
            "80:30080/TCP,53:30053/UDP",
            "5s",
            "app=web"
        ])
    );
    let headless = json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}});
    assert_eq!(
        cells("", "services", headless),
        json!([
            "db",
            "ClusterIP",
            "None",
            "<none>",
            "5432/TCP",
            "<unknown>",
            "<none>"
        ])
    );
}

#[test]
fn ready_and_cordoned_not_ready_nodes() {
    let ready = json!({
        "metadata": {"name": "node-1", "creationTimestamp": "2024-04-21T12:00:00Z",
                     "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "node-1"}},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node-1"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.13"}
        }
    });
    assert_eq!(
        cells("", "nodes", ready),
        json!([
            "node-1",
            "Ready",
            "control-plane",
            "10d",
            "v1.32.0",
            "192.168.1.10",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0-18-amd64",
            "containerd://1.7.13"
        ])
    );
    let cordoned = json!({
        "metadata": {"name": "node-2", "creationTimestamp": "2024-05-01T04:00:00Z"},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}],
                   "addresses": [{"type": "ExternalIP", "address": "203.0.113.7"}]}
    });
    assert_eq!(
        cells("", "nodes", cordoned),
        json!([
            "node-2",
            "NotReady,SchedulingDisabled",
            "<none>",
            "8h",
            "",
            "<none>",
            "203.0.113.7",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
}

#[test]
fn events() {
    let columns = column_names("", "events");
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject",
            "Source",
            "Message",
            "First Seen",
            "Count",
            "Name"
        ]
    );
    let wide: Vec<&str> = columns
        .iter()
        .filter(|(_, p)| *p == 1)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(wide, ["Subobject", "Source", "First Seen", "Count", "Name"]);

    let legacy = json!({
        "metadata": {"name": "web-1.17c1a2b3", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "fieldPath": "spec.containers{web}"},
        "reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container web\n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:30Z", "count": 7
    });
    assert_eq!(
        cells("", "events", legacy),
        json!([
            "30s",
            "Warning",
            "BackOff",
            "pod/web-1",
            "spec.containers{web}",
            "kubelet, node-1",
            "Back-off restarting failed container web",
            "10m",
            7,
            "web-1.17c1a2b3"
        ])
    );
    let series = json!({
        "metadata": {"name": "web.17c1"},
        "involvedObject": {"kind": "Deployment", "name": "web"},
        "reason": "ScalingReplicaSet", "type": "Normal", "message": "Scaled up replica set web-5d8f to 3",
        "eventTime": "2024-05-01T11:00:00.000000Z", "reportingComponent": "deployment-controller",
        "series": {"count": 4, "lastObservedTime": "2024-05-01T11:58:00.123456Z"}
    });
    assert_eq!(
        cells("", "events", series),
        // 1m59.88s: HumanDuration counts whole seconds below two minutes.
        json!([
            "119s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller",
            "Scaled up replica set web-5d8f to 3",
            "60m",
            4,
            "web.17c1"
        ])
    );
    let singleton = json!({"metadata": {"name": "n"}, "involvedObject": {"kind": "Node"}, "type": "Normal", "reason": "Starting"});
    assert_eq!(
        cells("", "events", singleton),
        json!([
            "<unknown>",
            "Normal",
            "Starting",
            "node",
            "",
            "",
            "",
            "<unknown>",
            1,
            "n"
        ])
    );
}

#[test]
fn core_and_config_tables() {
    let cases = vec![
        (
            ("", "namespaces"),
            json!({"metadata": {"name": "kube-system", "creationTimestamp": "2024-04-01T12:00:00Z"}, "status": {"phase": "Active"}}),
            json!(["kube-system", "Active", "30d"]),
        ),
        (
            ("", "namespaces"),
            json!({"metadata": {"name": "old"}, "status": {"phase": "Terminating"}}),
            json!(["old", "Terminating", "<unknown>"]),
        ),
        (
            ("", "configmaps"),
            json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "..."}, "binaryData": {"x": "AA=="}}),
            json!(["kube-root-ca.crt", 2, "<unknown>"]),
        ),
        (
            ("", "secrets"),
            json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
            json!(["tls", "kubernetes.io/tls", 2, "<unknown>"]),
        ),
        (
            ("", "secrets"),
            json!({"metadata": {"name": "plain"}}),
            json!(["plain", "Opaque", 0, "<unknown>"]),
        ),
        (
            ("", "serviceaccounts"),
            json!({"metadata": {"name": "default"}}),
            json!(["default", 0, "<unknown>"]),
        ),
        (
            ("", "endpoints"),
            json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}, {"ip": "10.42.0.7"}, {"ip": "10.42.0.8"}, {"ip": "10.42.0.9"}], "ports": [{"port": 80}]}]}),
            json!([
                "web",
                "10.42.0.5:80,10.42.0.6:80,10.42.0.7:80 + 2 more...",
                "<unknown>"
            ]),
        ),
        (
            ("discovery.k8s.io", "endpointslices"),
            json!({"metadata": {"name": "web-abcde"}, "addressType": "IPv4", "ports": [{"name": "http", "port": 80}, {"name": "named"}],
                   "endpoints": [{"addresses": ["10.42.0.5"]}, {"addresses": ["10.42.0.6"]}]}),
            json!([
                "web-abcde",
                "IPv4",
                "80,named",
                "10.42.0.5,10.42.0.6",
                "<unknown>"
            ]),
        ),
        (
            ("discovery.k8s.io", "endpointslices"),
            json!({"metadata": {"name": "empty"}, "addressType": "IPv4"}),
            json!(["empty", "IPv4", "<unset>", "<unset>", "<unknown>"]),
        ),
        (
            ("", "resourcequotas"),
            json!({"metadata": {"name": "quota"}, "status": {"hard": {"pods": "10", "requests.cpu": "2", "limits.memory": "4Gi", "limits.cpu": "4"},
                                                            "used": {"pods": "3", "requests.cpu": "500m", "limits.cpu": "1"}}}),
            json!([
                "quota",
                "pods: 3/10, requests.cpu: 500m/2",
                "limits.cpu: 1/4, limits.memory: 0/4Gi",
                "<unknown>"
            ]),
        ),
        (
            ("coordination.k8s.io", "leases"),
            json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "node-1_4f2a"}}),
            json!(["kube-scheduler", "node-1_4f2a", "<unknown>"]),
        ),
        (
            ("policy", "poddisruptionbudgets"),
            json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}}),
            json!(["web", "50%", "N/A", 1, "<unknown>"]),
        ),
        (
            ("policy", "poddisruptionbudgets"),
            json!({"metadata": {"name": "db"}, "spec": {"maxUnavailable": 1}}),
            json!(["db", "N/A", "1", 0, "<unknown>"]),
        ),
        (
            ("rbac.authorization.k8s.io", "rolebindings"),
            json!({"metadata": {"name": "read"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"kind": "User", "name": "jane"}, {"kind": "User", "name": "bob"}, {"kind": "Group", "name": "devs"},
                                {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]}),
            json!([
                "read",
                "ClusterRole/view",
                "<unknown>",
                "jane, bob",
                "devs",
                "tools/ci"
            ]),
        ),
        (
            ("rbac.authorization.k8s.io", "clusterrolebindings"),
            json!({"metadata": {"name": "admin"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "Group", "name": "system:masters"}]}),
            json!([
                "admin",
                "ClusterRole/cluster-admin",
                "<unknown>",
                "",
                "system:masters",
                ""
            ]),
        ),
        (
            ("certificates.k8s.io", "certificatesigningrequests"),
            json!({"metadata": {"name": "csr-8x2k", "creationTimestamp": "2024-05-01T11:59:00Z"},
                   "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "username": "system:node:node-1", "expirationSeconds": 86400, "request": "LS0t"},
                   "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}}),
            json!([
                "csr-8x2k",
                "60s",
                "kubernetes.io/kube-apiserver-client-kubelet",
                "system:node:node-1",
                "24h",
                "Approved,Issued"
            ]),
        ),
    ];
    for ((group, plural), object, want) in cases {
        assert_eq!(cells(group, plural, object), want, "{plural}");
    }
}

#[test]
fn other_resources_get_the_default_table() {
    for (group, plural) in [
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("", "limitranges"),
    ] {
        let t = build(
            group,
            plural,
            &[
                json!({"metadata": {"name": "x", "creationTimestamp": "2024-05-01T10:00:00.5+02:00"}}),
                json!({}),
            ],
            IncludeObject::None,
        );
        let columns: Vec<(&str, &str)> = t["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().expect("name"),
                    c["type"].as_str().expect("type"),
                )
            })
            .collect();
        assert_eq!(
            columns,
            [("Name", "string"), ("Created At", "date")],
            "{plural}"
        );
        assert_eq!(t["rows"][0]["cells"], json!(["x", "2024-05-01T08:00:00Z"]));
        assert_eq!(t["rows"][1]["cells"], json!(["", "0001-01-01T00:00:00Z"]));
    }
}

#[test]
fn include_object_variants() {
    let p = pod(json!({"phase": "Pending"}));
    let none = build("", "pods", std::slice::from_ref(&p), IncludeObject::None);
    assert!(none["rows"][0].get("object").is_none());

    let metadata = build(
        "",
        "pods",
        std::slice::from_ref(&p),
        IncludeObject::Metadata,
    );
    assert_eq!(
        metadata["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
               "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2024-05-01T11:55:00Z"}})
    );

    let object = build("", "pods", std::slice::from_ref(&p), IncludeObject::Object);
    assert_eq!(object["rows"][0]["object"], p);

    let mut bare = p.clone();
    bare.as_object_mut().expect("object").remove("kind");
    let filled = build("", "pods", &[bare], IncludeObject::Object);
    assert_eq!(filled["rows"][0]["object"]["kind"], "Pod");

    assert_eq!(IncludeObject::default(), IncludeObject::Metadata);
    assert_eq!(IncludeObject::from_query(""), Some(IncludeObject::Metadata));
    assert_eq!(IncludeObject::from_query("None"), Some(IncludeObject::None));
    assert_eq!(
        IncludeObject::from_query("Object"),
        Some(IncludeObject::Object)
    );
    assert_eq!(IncludeObject::from_query("object"), None);
}

#[test]
fn table_metadata_carries_list_metadata() {
    let t = table(
        resource("", "configmaps"),
        &[],
        json!({"resourceVersion": "1234", "continue": "eyJydiI6MTIzNH0", "remainingItemCount": 17, "selfLink": "/x"}),
        IncludeObject::Metadata,
        now(),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "1234", "continue": "eyJydiI6MTIzNH0", "remainingItemCount": 17})
    );
    assert_eq!(t["rows"], json!([]));

    let empty = table(
        resource("", "configmaps"),
        &[],
        json!({"continue": ""}),
        IncludeObject::Metadata,
        now(),
    );
    assert_eq!(empty["metadata"], json!({}));
    let null = table(
        resource("", "configmaps"),
        &[],
        Value::Null,
        IncludeObject::Metadata,
        now(),
    );
    assert_eq!(null["metadata"], json!({}));
}

#[test]
fn hostile_objects_never_panic_and_fill_every_column() {
    let hostile = [
        json!(null),
        json!([]),
        json!("pod"),
        json!({}),
        json!({"metadata": 7, "spec": "x", "status": []}),
        json!({"metadata": {"name": 5, "creationTimestamp": "yesterday", "deletionTimestamp": {}, "labels": [], "ownerReferences": {}},
               "spec": {"containers": "x", "initContainers": [1, null, {"name": []}], "replicas": "3", "selector": {"matchLabels": [1]},
                        "ports": [{"port": "80", "nodePort": -1}], "template": [], "readinessGates": [{}], "unschedulable": "yes",
                        "jobTemplate": 1, "claimRef": 1, "expirationSeconds": 99999999999999i64},
               "status": {"containerStatuses": [null, 1, {"state": {"terminated": "x"}, "lastState": {"terminated": {"finishedAt": 3}}}],
                          "initContainerStatuses": [{"state": {"terminated": {"exitCode": "1"}}}], "conditions": "x",
                          "hard": {"cpu": {}}, "addresses": [1], "nodeInfo": [], "loadBalancer": {"ingress": [1]}},
               "involvedObject": 1, "series": {"count": "x"}, "subsets": [{"addresses": [1], "ports": [1]}], "endpoints": [1]}),
    ];
    for resource in capstan_api::resources() {
        let t = table(
            resource,
            &hostile,
            json!({"resourceVersion": 5}),
            IncludeObject::Metadata,
            now(),
        );
        let columns = t["columnDefinitions"].as_array().expect("columns").len();
        let rows = t["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), hostile.len(), "{}", resource.plural);
        for row in rows {
            assert_eq!(
                row["cells"].as_array().expect("cells").len(),
                columns,
                "{}",
                resource.plural
            );
            assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
        }
    }
}
