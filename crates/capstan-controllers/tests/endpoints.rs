//! The endpoint and endpointslice controllers on a TestCluster: Endpoints and EndpointSlices as
//! kube writes them, from a service and pods whose status the test sets (there is no kubelet).

mod support;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use support::{create, eventually, start};

async fn node(client: &kube::Client, name: &str) {
    create(
        &Api::<Node>::all(client.clone()),
        json!({"metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "zone-a"}}}),
    )
    .await;
}

/// A pod bound to `n1` whose status says it runs at `ip`, Ready or not.
async fn running_pod(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) -> Pod {
    create(pods, json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080}]}]},
    })).await;
    set_ready(pods, name, ip, ready).await
}

async fn set_ready(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) -> Pod {
    let status = if ready { "True" } else { "False" };
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": status, "lastTransitionTime": "2025-01-01T00:00:00Z"}],
    }})))
    .await
    .expect("patch status")
}

fn address(pod: &Pod, ip: &str) -> serde_json::Value {
    json!({"ip": ip, "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default", "name": pod.metadata.name, "uid": pod.metadata.uid}})
}

#[tokio::test]
async fn endpoints_and_slices_follow_the_pods_a_service_selects() {
    let h = start().await;
    let c = &h.client;
    node(c, "n1").await;
    let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(c.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    let svc = create(&svcs, json!({
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    })).await;
    let a = running_pod(&pods, "a", "10.42.0.5", true).await;
    let b = running_pod(&pods, "b", "10.42.0.6", false).await;
    // No IP yet: left out.
    create(&pods, json!({"metadata": {"name": "pending", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})).await;
    // Not selected.
    create(&pods, json!({"metadata": {"name": "other", "labels": {"app": "db"}}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]}})).await;

    let want_subsets = json!([{
        "addresses": [address(&a, "10.42.0.5")],
        "notReadyAddresses": [address(&b, "10.42.0.6")],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }]);
    let ep = eventually("the Endpoints", || async {
        let ep = endpoints.get_opt("web").await.expect("get")?;
        (serde_json::to_value(&ep.subsets).expect("json") == want_subsets).then_some(ep)
    })
    .await;
    assert_eq!(
        ep.metadata.labels,
        Some([("tier".to_owned(), "front".to_owned())].into())
    );
    assert!(
        ep.annotations()
            .contains_key("endpoints.kubernetes.io/last-change-trigger-time")
    );

    let endpoint = |pod: &Pod, ip: &str, ready: bool| {
        json!({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": ready, "terminating": false},
            "nodeName": "n1",
            "zone": "zone-a",
            "targetRef": {"kind": "Pod", "namespace": "default", "name": pod.metadata.name, "uid": pod.metadata.uid},
        })
    };
    let want_endpoints = json!([
        endpoint(&a, "10.42.0.5", true),
        endpoint(&b, "10.42.0.6", false)
    ]);
    let slice = eventually("the EndpointSlice", || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .expect("list");
        let slice = list.items.into_iter().next()?;
        (serde_json::to_value(&slice.endpoints).expect("json") == want_endpoints).then_some(slice)
    })
    .await;
    assert!(
        slice
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("web-") && n.len() == "web-".len() + 5)
    );
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        serde_json::to_value(&slice.ports).expect("json"),
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    let labels = slice.metadata.labels.clone().expect("labels");
    assert_eq!(
        labels.get("kubernetes.io/service-name").map(String::as_str),
        Some("web")
    );
    assert_eq!(
        labels
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
    let owner = &slice.metadata.owner_references.expect("owner")[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Service", "web", Some(true), Some(true))
    );
    assert_eq!(Some(owner.uid.clone()), svc.metadata.uid);

    // a turns not-ready, b ready: they swap places.
    set_ready(&pods, "a", "10.42.0.5", false).await;
    set_ready(&pods, "b", "10.42.0.6", true).await;
    let swapped = json!([{
        "addresses": [address(&b, "10.42.0.6")],
        "notReadyAddresses": [address(&a, "10.42.0.5")],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }]);
    eventually("a to move to notReadyAddresses", || async {
        let ep = endpoints.get_opt("web").await.expect("get")?;
        (serde_json::to_value(&ep.subsets).expect("json") == swapped).then_some(())
    })
    .await;
    let slice_swapped = json!([
        endpoint(&a, "10.42.0.5", false),
        endpoint(&b, "10.42.0.6", true)
    ]);
    eventually("the slice to follow", || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .expect("list");
        (list.items.len() == 1
            && serde_json::to_value(&list.items[0].endpoints).expect("json") == slice_swapped)
            .then_some(())
    })
    .await;

    // Deleting the service deletes its Endpoints (and the garbage collector its slices).
    svcs.delete("web", &DeleteParams::default())
        .await
        .expect("delete service");
    eventually("Endpoints and slices to go", || async {
        let ep = endpoints.get_opt("web").await.expect("get");
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .expect("list");
        (ep.is_none() && list.items.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn services_without_selector_and_the_kubernetes_service_are_left_alone() {
    let h = start().await;
    let c = &h.client;
    let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(c.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    let before = endpoints
        .get("kubernetes")
        .await
        .expect("kubernetes endpoints");
    create(
        &svcs,
        json!({"metadata": {"name": "external"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    // A selector service in the same namespace proves the controller is running.
    create(&svcs, json!({"metadata": {"name": "empty"}, "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}})).await;
    let placeholder = eventually("the placeholder slice of an empty service", || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=empty"))
            .await
            .expect("list");
        list.items.into_iter().next()
    })
    .await;
    assert!(placeholder.endpoints.is_empty());
    let empty = eventually("Endpoints of the empty service", || async {
        endpoints.get_opt("empty").await.expect("get")
    })
    .await;
    assert_eq!(empty.subsets, None);

    assert!(endpoints.get_opt("external").await.expect("get").is_none());
    let after = endpoints
        .get("kubernetes")
        .await
        .expect("kubernetes endpoints");
    assert_eq!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=external"))
        .await
        .expect("list");
    assert!(list.items.is_empty());
}
