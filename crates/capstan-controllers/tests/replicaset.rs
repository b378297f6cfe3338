//! The ReplicaSet controller on a TestCluster: pods created from the template with controller
//! references, scaling both ways (not-ready pods deleted first), replacement of deleted pods,
//! adoption and release, and status counts.

mod support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use serde_json::json;
use support::{Harness, controller_uid, eventually, is_ready, start, template};

async fn replicaset(h: &Harness, name: &str, replicas: i32) -> ReplicaSet {
    h.create(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template(json!({"app": name, "tier": "frontend"}), "nginx:1.25"),
        }
    }))
    .await
}

/// Waits until exactly `n` active pods carry `app=<name>`, all controlled by `rs`.
async fn owned_pods(h: &Harness, rs: &ReplicaSet, n: usize) -> Vec<Pod> {
    let name = rs.metadata.name.clone().expect("name");
    let uid = rs.metadata.uid.clone();
    let (name, uid) = (&name, &uid);
    eventually(&format!("{n} pods of {name}"), || async move {
        let pods = h.pods(&format!("app={name}")).await;
        (pods.len() == n && pods.iter().all(|p| controller_uid(&p.metadata) == *uid))
            .then_some(pods)
    })
    .await
}

#[tokio::test]
async fn creates_pods_from_the_template_with_controller_references() {
    let h = start().await;
    let rs = replicaset(&h, "web", 3).await;
    let pods = owned_pods(&h, &rs, 3).await;
    for pod in &pods {
        let name = pod.metadata.name.as_deref().expect("name");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert!(
            name.starts_with("web-") && name.len() == "web-".len() + 5,
            "{name}"
        );
        let owner = &pod.metadata.owner_references.as_ref().expect("owner refs")[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.api_version.as_str(),
                owner.name.as_str()
            ),
            ("ReplicaSet", "apps/v1", "web")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.get("tier").map(String::as_str), Some("frontend"));
    }
    let h = &h;
    let events = eventually("SuccessfulCreate events", || async move {
        let events = h.events("web", "SuccessfulCreate").await;
        (events.len() == 3).then_some(events)
    })
    .await;
    for pod in &pods {
        let name = pod.metadata.name.as_deref().expect("name");
        assert!(
            events.contains(&format!("Created pod: {name}")),
            "{events:?}"
        );
    }
    let status = eventually("status.replicas 3", || async move {
        let rs: ReplicaSet = h.api().get("web").await.ok()?;
        rs.status.filter(|s| s.replicas == 3)
    })
    .await;
    assert_eq!(status.fully_labeled_replicas, Some(3));
    assert_eq!(status.ready_replicas.unwrap_or(0), 0);
    assert_eq!(status.observed_generation, rs.metadata.generation);
}

#[tokio::test]
async fn scales_up_and_down_deleting_not_ready_pods_first() {
    let h = start().await;
    let rs = replicaset(&h, "web", 2).await;
    owned_pods(&h, &rs, 2).await;
    let rs: ReplicaSet = h.merge_patch("web", json!({"spec": {"replicas": 5}})).await;
    let pods = owned_pods(&h, &rs, 5).await;

    // Two ready pods survive a scale-down to two; the three not-ready ones go.
    for pod in &pods[..2] {
        h.mark_ready(pod).await;
    }
    let survivors: Vec<Option<String>> =
        pods[..2].iter().map(|p| p.metadata.name.clone()).collect();
    let rs: ReplicaSet = h.merge_patch("web", json!({"spec": {"replicas": 2}})).await;
    let left = owned_pods(&h, &rs, 2).await;
    let left: Vec<Option<String>> = left.iter().map(|p| p.metadata.name.clone()).collect();
    assert_eq!(left, survivors);
    let h = &h;
    let deleted = eventually("SuccessfulDelete events", || async move {
        let events = h.events("web", "SuccessfulDelete").await;
        (events.len() == 3).then_some(events)
    })
    .await;
    for pod in &pods[2..] {
        let name = pod.metadata.name.as_deref().expect("name");
        assert!(
            deleted.contains(&format!("Deleted pod: {name}")),
            "{deleted:?}"
        );
    }

    let rs: ReplicaSet = h.merge_patch("web", json!({"spec": {"replicas": 0}})).await;
    owned_pods(h, &rs, 0).await;
}

#[tokio::test]
async fn a_deleted_pod_is_replaced() {
    let h = start().await;
    let rs = replicaset(&h, "web", 3).await;
    let pods = owned_pods(&h, &rs, 3).await;
    let victim = pods[0].metadata.name.clone().expect("name");
    h.api::<Pod>()
        .delete(&victim, &DeleteParams::default())
        .await
        .expect("delete");
    let (h, victim) = (&h, &victim);
    eventually("a replacement pod", || async move {
        let pods = h.pods("app=web").await;
        (pods.len() == 3
            && pods
                .iter()
                .all(|p| p.metadata.name.as_ref() != Some(victim)))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn adopts_matching_orphans_and_releases_pods_that_stop_matching() {
    let h = start().await;
    let orphan: Pod = h
        .create(json!({
            "metadata": {"name": "orphan", "labels": {"app": "web", "tier": "frontend"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
        }))
        .await;
    let rs = replicaset(&h, "web", 2).await;
    let pods = owned_pods(&h, &rs, 2).await;
    assert!(
        pods.iter().any(|p| p.metadata.uid == orphan.metadata.uid),
        "the orphan was adopted instead of creating a second pod"
    );

    // Relabelled out of the selector: released (no owner) and replaced.
    let _: Pod = h
        .merge_patch("orphan", json!({"metadata": {"labels": {"app": "other"}}}))
        .await;
    let h = &h;
    eventually("the relabelled pod released", || async move {
        let pod: Pod = h.api().get("orphan").await.ok()?;
        controller_uid(&pod.metadata).is_none().then_some(())
    })
    .await;
    owned_pods(h, &rs, 2).await;
}

#[tokio::test]
async fn status_counts_ready_and_available_pods() {
    let h = start().await;
    let rs = replicaset(&h, "web", 3).await;
    let pods = owned_pods(&h, &rs, 3).await;
    for pod in &pods {
        h.mark_ready(pod).await;
    }
    let h = &h;
    let status = eventually("readyReplicas 3", || async move {
        let rs: ReplicaSet = h.api().get("web").await.ok()?;
        rs.status.filter(|s| s.ready_replicas == Some(3))
    })
    .await;
    assert_eq!(status.available_replicas, Some(3));
    assert_eq!(status.replicas, 3);
    assert!(h.pods("app=web").await.iter().all(is_ready));

    // A spec change is observed.
    let rs: ReplicaSet = h
        .merge_patch("web", json!({"spec": {"minReadySeconds": 1}}))
        .await;
    let generation = rs.metadata.generation;
    eventually("observedGeneration", || async move {
        let rs: ReplicaSet = h.api().get("web").await.ok()?;
        (rs.status?.observed_generation == generation).then_some(())
    })
    .await;
}
