//! The namespace controller on a TestCluster: deleting a namespace removes its content, then the
//! namespace itself; content that lingers keeps the namespace Terminating with kube's conditions.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::{create, create_namespace, eventually, start};

#[tokio::test]
async fn deleting_a_namespace_removes_its_content_then_the_namespace() {
    let h = start().await;
    let c = &h.client;
    create_namespace(c, "doomed").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "doomed");
    let svcs: Api<Service> = Api::namespaced(c.clone(), "doomed");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "doomed");
    create(
        &cms,
        json!({"metadata": {"name": "settings"}, "data": {"a": "1"}}),
    )
    .await;
    create(&svcs, json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})).await;
    for name in ["p1", "p2"] {
        create(&pods, json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).await;
    }

    let namespaces: Api<Namespace> = Api::all(c.clone());
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete namespace");

    eventually("the namespace to disappear", || async {
        namespaces
            .get_opt("doomed")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    // Nothing of the namespace is left behind in the store.
    for (kind, n) in [
        (
            "configmaps",
            cms.list(&Default::default())
                .await
                .expect("list")
                .items
                .len(),
        ),
        (
            "services",
            svcs.list(&Default::default())
                .await
                .expect("list")
                .items
                .len(),
        ),
        (
            "pods",
            pods.list(&Default::default())
                .await
                .expect("list")
                .items
                .len(),
        ),
    ] {
        assert_eq!(n, 0, "{kind} left in deleted namespace");
    }
}

/// Needs the API server to keep a Terminating namespace while `spec.finalizers` is non-empty on
/// every write (today a status update of a Terminating namespace deletes it at once).
#[tokio::test]
async fn content_with_a_finalizer_keeps_the_namespace_terminating_with_conditions() {
    let h = start().await;
    let c = &h.client;
    create_namespace(c, "sticky").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "sticky");
    create(
        &cms,
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await;

    let namespaces: Api<Namespace> = Api::all(c.clone());
    namespaces
        .delete("sticky", &DeleteParams::default())
        .await
        .expect("delete namespace");

    let ns = eventually("the content-remaining condition", || async {
        let ns = namespaces.get_opt("sticky").await.expect("get")?;
        let conditions = ns.status.as_ref()?.conditions.clone()?;
        conditions
            .iter()
            .any(|c| c.type_ == "NamespaceContentRemaining" && c.status == "True")
            .then_some(ns)
    })
    .await;
    let status = ns.status.expect("status");
    assert_eq!(status.phase.as_deref(), Some("Terminating"));
    let conditions = status.conditions.expect("conditions");
    let get = |t: &str| {
        let c = conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition present");
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    };
    assert_eq!(
        get("NamespaceContentRemaining"),
        (
            "True".into(),
            "SomeResourcesRemain".into(),
            "Some resources are remaining: configmaps. has 1 resource instances".into()
        )
    );
    assert_eq!(
        get("NamespaceFinalizersRemaining"),
        (
            "True".into(),
            "SomeFinalizerRemain".into(),
            "Some finalizers are remaining: example.com/hold in 1 resource instances".into()
        )
    );
    assert_eq!(
        get("NamespaceDeletionDiscoveryFailure"),
        (
            "False".into(),
            "ResourcesDiscovered".into(),
            "All resources successfully discovered".into()
        )
    );
    assert_eq!(
        get("NamespaceDeletionContentFailure"),
        (
            "False".into(),
            "ContentDeleted".into(),
            "All content successfully deleted, may be waiting on finalization".into()
        )
    );
    assert_eq!(
        ns.spec.and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_owned()])
    );

    // Releasing the object lets the namespace go (the controller re-checks on its own).
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("drop finalizer");
    tokio::time::timeout(Duration::from_secs(30), async {
        while namespaces.get_opt("sticky").await.expect("get").is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("namespace finalized after its content went");
}
