//! The StatefulSet controller on a TestCluster (the test plays kubelet by marking pods Running and
//! Ready): ordered creation with stable names and identity labels, Parallel creation, scale-down
//! from the highest ordinal, recreation of failed pods, and RollingUpdate with a partition through
//! ControllerRevisions.

mod support;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::json;
use support::{Harness, eventually, finish_pod, is_ready, start, template};

async fn statefulset(
    h: &Harness,
    name: &str,
    replicas: i32,
    extra: serde_json::Value,
) -> StatefulSet {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": {"app": name}},
        "template": template(json!({"app": name}), "nginx:1.25"),
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    h.create(json!({"metadata": {"name": name}, "spec": spec}))
        .await
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn image(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.containers.first()?.image.clone()
}

/// Waits until the set's pods are exactly `want` (by name).
async fn pods_named(h: &Harness, app: &str, want: &[&str]) -> Vec<Pod> {
    eventually(&format!("pods {want:?}"), || async {
        let pods = h.pods(&format!("app={app}")).await;
        (names(&pods) == want).then_some(pods)
    })
    .await
}

#[tokio::test]
async fn ordered_ready_creates_pods_one_by_one_with_stable_identities() {
    let h = start().await;
    let set = statefulset(&h, "db", 3, json!({})).await;
    let pods = pods_named(&h, "db", &["db-0"]).await;
    // db-1 waits for db-0 to be Running and Ready.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(names(&h.pods("app=db").await), ["db-0"]);
    let pod = &pods[0];
    assert_eq!(
        label(pod, "statefulset.kubernetes.io/pod-name"),
        Some("db-0")
    );
    assert_eq!(label(pod, "apps.kubernetes.io/pod-index"), Some("0"));
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("db-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("db"));
    let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("StatefulSet", set.metadata.uid.as_deref().expect("uid"))
    );

    h.mark_ready(pod).await;
    let pods = pods_named(&h, "db", &["db-0", "db-1"]).await;
    h.mark_ready(&pods[1]).await;
    let pods = pods_named(&h, "db", &["db-0", "db-1", "db-2"]).await;
    h.mark_ready(&pods[2]).await;

    let status = eventually("all replicas ready in status", || async {
        let s = h
            .api::<StatefulSet>()
            .get("db")
            .await
            .expect("get")
            .status?;
        (s.ready_replicas == Some(3) && s.current_replicas == Some(3)).then_some(s)
    })
    .await;
    assert_eq!(status.replicas, 3);
    assert_eq!(status.available_replicas, Some(3));
    assert_eq!(status.updated_replicas, Some(3));
    assert_eq!(status.observed_generation, Some(1));
    let revision = status.current_revision.clone().expect("current revision");
    assert_eq!(status.update_revision.as_deref(), Some(revision.as_str()));
    assert!(revision.starts_with("db-"), "{revision}");
    for pod in h.pods("app=db").await {
        assert_eq!(
            label(&pod, "controller-revision-hash"),
            Some(revision.as_str())
        );
    }
    let rev = h
        .api::<ControllerRevision>()
        .get(&revision)
        .await
        .expect("revision");
    assert_eq!(rev.revision, 1);
    assert_eq!(
        rev.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .map(String::as_str),
        Some("db")
    );
    assert!(
        rev.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("controller.kubernetes.io/hash"))
    );

    // Scale down: the highest ordinals go, db-2 before db-1.
    h.merge_patch::<StatefulSet>("db", json!({"spec": {"replicas": 1}}))
        .await;
    pods_named(&h, "db", &["db-0"]).await;
    // Events are posted after the deletes: wait for both.
    let events = h.api::<k8s_openapi::api::core::v1::Event>();
    let mut deletes = eventually("two SuccessfulDelete events", || async {
        let mut items = events.list(&ListParams::default()).await.ok()?.items;
        items.retain(|e| e.reason.as_deref() == Some("SuccessfulDelete"));
        (items.len() >= 2).then_some(items)
    })
    .await;
    deletes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let messages: Vec<String> = deletes.into_iter().filter_map(|e| e.message).collect();
    assert_eq!(
        messages,
        [
            "delete Pod db-2 in StatefulSet db successful",
            "delete Pod db-1 in StatefulSet db successful"
        ]
    );
}

#[tokio::test]
async fn parallel_creates_all_pods_at_once_and_failed_pods_are_recreated() {
    let h = start().await;
    statefulset(&h, "par", 3, json!({"podManagementPolicy": "Parallel"})).await;
    let pods = pods_named(&h, "par", &["par-0", "par-1", "par-2"]).await;
    assert!(pods.iter().all(|p| !is_ready(p)));

    let old_uid = pods[1].metadata.uid.clone();
    finish_pod(&h.api(), "par-1", "Failed").await;
    eventually("par-1 recreated", || async {
        let pods = h.pods("app=par").await;
        pods.iter()
            .any(|p| p.metadata.name.as_deref() == Some("par-1") && p.metadata.uid != old_uid)
            .then_some(())
    })
    .await;
    assert!(!h.events("par", "RecreatingFailedPod").await.is_empty());
}

#[tokio::test]
async fn rolling_update_goes_from_the_highest_ordinal_down_to_the_partition() {
    let h = start().await;
    statefulset(
        &h,
        "ru",
        3,
        json!({"podManagementPolicy": "Parallel", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
    )
    .await;
    let pods = pods_named(&h, "ru", &["ru-0", "ru-1", "ru-2"]).await;
    for pod in &pods {
        h.mark_ready(pod).await;
    }
    let first = eventually("a current revision", || async {
        let s = h
            .api::<StatefulSet>()
            .get("ru")
            .await
            .expect("get")
            .status?;
        (s.ready_replicas == Some(3)).then_some(s.current_revision?)
    })
    .await;

    h.merge_patch::<StatefulSet>(
        "ru",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}}),
    )
    .await;
    // ru-2 is replaced first; ru-1 waits until ru-2 is healthy again.
    let pods = eventually("ru-2 on the new image", || async {
        let pods = h.pods("app=ru").await;
        (pods.len() == 3 && image(&pods[2]).as_deref() == Some("nginx:1.26")).then_some(pods)
    })
    .await;
    assert_eq!(image(&pods[1]).as_deref(), Some("nginx:1.25"));
    let update = eventually("an update revision", || async {
        let s = h
            .api::<StatefulSet>()
            .get("ru")
            .await
            .expect("get")
            .status?;
        s.update_revision.filter(|u| *u != first)
    })
    .await;
    assert_eq!(
        label(&pods[2], "controller-revision-hash"),
        Some(update.as_str())
    );
    h.mark_ready(&pods[2]).await;
    let pods = eventually("ru-1 on the new image", || async {
        let pods = h.pods("app=ru").await;
        (pods.len() == 3 && image(&pods[1]).as_deref() == Some("nginx:1.26")).then_some(pods)
    })
    .await;
    h.mark_ready(&pods[1]).await;
    // ru-0 is below the partition: it keeps the old revision.
    let status = eventually("two updated replicas", || async {
        let s = h
            .api::<StatefulSet>()
            .get("ru")
            .await
            .expect("get")
            .status?;
        (s.updated_replicas == Some(2) && s.ready_replicas == Some(3)).then_some(s)
    })
    .await;
    assert_eq!(status.current_revision.as_deref(), Some(first.as_str()));
    assert_eq!(status.current_replicas, Some(1));
    let pods = h.pods("app=ru").await;
    assert_eq!(image(&pods[0]).as_deref(), Some("nginx:1.25"));
    let revisions = h
        .api::<ControllerRevision>()
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    let mut numbers: Vec<i64> = revisions.iter().map(|r| r.revision).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2]);

    // Lifting the partition completes the rollout and makes the update revision current.
    h.merge_patch::<StatefulSet>(
        "ru",
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}),
    )
    .await;
    let pods = eventually("ru-0 on the new image", || async {
        let pods = h.pods("app=ru").await;
        (pods.len() == 3 && image(&pods[0]).as_deref() == Some("nginx:1.26")).then_some(pods)
    })
    .await;
    h.mark_ready(&pods[0]).await;
    eventually("the update revision to become current", || async {
        let s = h
            .api::<StatefulSet>()
            .get("ru")
            .await
            .expect("get")
            .status?;
        (s.current_revision.as_deref() == Some(update.as_str()) && s.current_replicas == Some(3))
            .then_some(())
    })
    .await;
}
