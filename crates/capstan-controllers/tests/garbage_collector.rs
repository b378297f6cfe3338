//! The garbage collector on a TestCluster: background, foreground and orphan deletion through
//! `metadata.ownerReferences`.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::{create, eventually, gone, start};

fn owner_ref(
    kind: &str,
    api_version: &str,
    owner: &impl kube::Resource,
    block: bool,
) -> serde_json::Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "name": owner.meta().name, "uid": owner.meta().uid,
        "controller": true, "blockOwnerDeletion": block,
    })
}

async fn configmap(
    api: &Api<ConfigMap>,
    name: &str,
    owners: Vec<serde_json::Value>,
    finalizers: &[&str],
) -> ConfigMap {
    create(
        api,
        json!({"metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers}}),
    )
    .await
}

#[tokio::test]
async fn dependents_of_a_deleted_owner_are_deleted_in_the_background() {
    let h = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    let owner = configmap(&cms, "owner", vec![], &[]).await;
    let other = configmap(&cms, "other-owner", vec![], &[]).await;
    let r = |o: &ConfigMap| owner_ref("ConfigMap", "v1", o, false);
    configmap(&cms, "child-1", vec![r(&owner)], &[]).await;
    configmap(&cms, "child-2", vec![r(&owner)], &[]).await;
    configmap(&cms, "shared", vec![r(&owner), json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "other-owner", "uid": other.metadata.uid})], &[]).await;

    cms.delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");
    gone(&cms, "child-1").await;
    gone(&cms, "child-2").await;
    // A dependent with a live owner stays, without the reference to the dead one.
    let shared = eventually("shared to lose its dead owner", || async {
        let cm = cms
            .get_opt("shared")
            .await
            .expect("get")
            .expect("shared survives");
        (cm.metadata.owner_references.as_ref().map(Vec::len) == Some(1)).then_some(cm)
    })
    .await;
    assert_eq!(
        shared.metadata.owner_references.expect("refs")[0].uid,
        other.metadata.uid.expect("uid")
    );
}

#[tokio::test]
async fn an_object_created_with_a_missing_owner_is_collected() {
    let h = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    configmap(&cms, "stray", vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "never-was", "uid": "00000000-0000-0000-0000-000000000001"})], &[]).await;
    gone(&cms, "stray").await;
}

#[tokio::test]
async fn deleting_a_deployment_deletes_its_replicasets_and_their_pods() {
    let h = start().await;
    let c = &h.client;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    let d = create(&deployments, json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template}})).await;
    let rs = create(&replicasets, json!({
        "metadata": {"name": "web-by-hand", "labels": {"app": "web"}, "ownerReferences": [owner_ref("Deployment", "apps/v1", &d, true)]},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template},
    })).await;
    create(&pods, json!({
        "metadata": {"name": "web-by-hand-1", "labels": {"app": "web"}, "ownerReferences": [owner_ref("ReplicaSet", "apps/v1", &rs, true)]},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    })).await;

    deployments
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete deployment");
    gone(&replicasets, "web-by-hand").await;
    gone(&pods, "web-by-hand-1").await;
    // Whatever else the workload controllers made for this deployment went with it.
    eventually("no replicasets or pods left", || async {
        let rs = replicasets
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len();
        let p = pods
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len();
        (rs == 0 && p == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let h = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    let owner = configmap(&cms, "fg-owner", vec![], &[]).await;
    configmap(
        &cms,
        "blocker",
        vec![owner_ref("ConfigMap", "v1", &owner, true)],
        &["example.com/hold"],
    )
    .await;
    configmap(
        &cms,
        "plain",
        vec![owner_ref("ConfigMap", "v1", &owner, false)],
        &[],
    )
    .await;

    cms.delete("fg-owner", &DeleteParams::foreground())
        .await
        .expect("delete owner");
    gone(&cms, "plain").await;
    let blocker = eventually("the blocker to be deleting", || async {
        cms.get_opt("blocker")
            .await
            .expect("get")
            .filter(|b| b.metadata.deletion_timestamp.is_some())
    })
    .await;
    assert!(
        blocker
            .metadata
            .finalizers
            .expect("finalizers")
            .contains(&"example.com/hold".to_owned())
    );
    // The owner waits for the blocking dependent.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = cms
        .get_opt("fg-owner")
        .await
        .expect("get")
        .expect("owner waits for its blocking dependent");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        waiting.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_owned()])
    );

    cms.patch(
        "blocker",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release blocker");
    gone(&cms, "blocker").await;
    gone(&cms, "fg-owner").await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_and_strips_the_reference() {
    let h = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    let owner = configmap(&cms, "orphan-owner", vec![], &[]).await;
    let keeper = configmap(&cms, "keeper", vec![], &[]).await;
    configmap(&cms, "kept", vec![owner_ref("ConfigMap", "v1", &owner, true), json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "keeper", "uid": keeper.metadata.uid})], &[]).await;
    configmap(
        &cms,
        "lone",
        vec![owner_ref("ConfigMap", "v1", &owner, true)],
        &[],
    )
    .await;

    cms.delete("orphan-owner", &DeleteParams::orphan())
        .await
        .expect("delete owner");
    gone(&cms, "orphan-owner").await;
    let lone = cms
        .get_opt("lone")
        .await
        .expect("get")
        .expect("orphaned dependent survives");
    assert_eq!(lone.metadata.owner_references.unwrap_or_default().len(), 0);
    let kept = cms
        .get_opt("kept")
        .await
        .expect("get")
        .expect("kept survives");
    let refs = kept.metadata.owner_references.expect("refs");
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "keeper");
    // And they stay: the owner is gone but nothing points to it any more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(cms.get_opt("lone").await.expect("get").is_some());
}
