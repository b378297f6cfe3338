//! The client-visible contract of the read-modify-write verbs (update, binding), which start from
//! the watch cache's copy: writes chained on the returned resourceVersion never conflict, a stale one
//! does, a no-op keeps the resourceVersion, a pod is bound once. (The cache applies a write before its
//! response is sent, so here the cached copy is rarely behind; the store fallback for a lagging copy
//! matters under load.)

use capstan_apiserver::testing::TestCluster;
use http::StatusCode;
use serde_json::{Value, json};

mod support;
use support::Client;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn rv(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn create_configmap(client: &Client, name: &str, data: Value) -> Value {
    let (code, created) = client
        .json(
            "POST",
            CONFIGMAPS,
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name}, "data": data})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    created
}

#[tokio::test]
async fn updates_with_the_returned_resource_version_never_conflict() {
    let cluster = TestCluster::start().await;
    let client = Client::new(&cluster);
    let mut object = create_configmap(&client, "counter", json!({"n": "0"})).await;
    // Each PUT carries the resourceVersion the previous write returned, sent at once.
    for n in 1..=60 {
        object["data"]["n"] = json!(n.to_string());
        let (code, updated) = client
            .json(
                "PUT",
                &format!("{CONFIGMAPS}/counter"),
                Some(object.clone()),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "update {n}: {updated}");
        assert_ne!(rv(&updated), rv(&object), "update {n} made a new revision");
        object = updated;
    }
    // A real conflict still is one.
    let mut stale = object.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let (code, status) = client
        .json("PUT", &format!("{CONFIGMAPS}/counter"), Some(stale))
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{status}");
    assert_eq!(status["reason"], "Conflict");

    let (code, read) = client
        .json("GET", &format!("{CONFIGMAPS}/counter"), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(read["data"]["n"], "60");
    assert_eq!(rv(&read), rv(&object));
}

#[tokio::test]
async fn a_no_op_update_keeps_the_resource_version() {
    let cluster = TestCluster::start().await;
    let client = Client::new(&cluster);
    let created = create_configmap(&client, "same", json!({"a": "b"})).await;
    for _ in 0..10 {
        let (code, again) = client
            .json("PUT", &format!("{CONFIGMAPS}/same"), Some(created.clone()))
            .await;
        assert_eq!(code, StatusCode::OK, "{again}");
        assert_eq!(rv(&again), rv(&created));
    }
}

#[tokio::test]
async fn a_pod_is_bound_once_and_a_second_binding_names_its_node() {
    let cluster = TestCluster::start().await;
    let client = Client::new(&cluster);
    for i in 0..20 {
        let name = format!("p{i}");
        let (code, pod) = client
            .json(
                "POST",
                PODS,
                Some(
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
                ),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED, "{pod}");
        let binding = |node: &str| {
            json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
        };
        let path = format!("{PODS}/{name}/binding");
        let (code, status) = client.json("POST", &path, Some(binding("n1"))).await;
        assert_eq!(code, StatusCode::CREATED, "{status}");
        let (code, status) = client.json("POST", &path, Some(binding("n2"))).await;
        assert_eq!(code, StatusCode::CONFLICT, "{status}");
        assert_eq!(
            status["message"],
            format!(
                "Operation cannot be fulfilled on pods \"{name}\": pod {name} is already assigned to node \"n1\""
            )
        );

        let (code, pod) = client.json("GET", &format!("{PODS}/{name}"), None).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(pod["spec"]["nodeName"], "n1");
        let scheduled: Vec<&Value> = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["type"] == "PodScheduled")
            .collect();
        assert_eq!(scheduled.len(), 1, "{pod}");
        assert_eq!(scheduled[0]["status"], "True");
    }
    // The watch cache indexes the bound pods by their node (kubelets list them that way).
    let (code, list) = client
        .json(
            "GET",
            &format!("{PODS}?fieldSelector=spec.nodeName%3Dn1"),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{list}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(20), "{list}");
    let (_, list) = client
        .json(
            "GET",
            &format!("{PODS}?fieldSelector=spec.nodeName%3D"),
            None,
        )
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
}
