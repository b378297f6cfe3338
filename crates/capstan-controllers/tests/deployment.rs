//! The Deployment controller on a TestCluster (with the ReplicaSet controller; the test plays
//! kubelet by marking pods ready): ReplicaSets per template and revisions, a RollingUpdate that
//! respects maxUnavailable at every observed step, rollback reusing the old ReplicaSet, Recreate,
//! scaling, pausing, history cleanup, and the status `kubectl rollout status` waits on.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::json;
use support::{Harness, controller_uid, eventually, is_ready, start, template};

const REVISION: &str = "deployment.kubernetes.io/revision";

async fn deployment(h: &Harness, replicas: i32, strategy: serde_json::Value) -> Deployment {
    h.create(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "template": template(json!({"app": "web"}), "nginx:1.25"),
        }
    }))
    .await
}

async fn replica_sets(h: &Harness) -> Vec<ReplicaSet> {
    let mut rss = h
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    rss.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    rss
}

fn image(rs: &ReplicaSet) -> Option<String> {
    rs.spec
        .as_ref()?
        .template
        .as_ref()?
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

fn annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<String> {
    meta.annotations.as_ref()?.get(key).cloned()
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn condition(d: &Deployment, type_: &str) -> Option<DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// The replica set running `image`.
async fn replica_set_for(h: &Harness, img: &str) -> ReplicaSet {
    eventually(&format!("a replica set for {img}"), || async move {
        replica_sets(h)
            .await
            .into_iter()
            .find(|rs| image(rs).as_deref() == Some(img))
    })
    .await
}

/// What `kubectl rollout status` checks: the latest generation observed and every replica updated
/// and available, no old ones left, and no timeout.
fn rollout_done(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = d.status.as_ref() else {
        return false;
    };
    s.observed_generation >= d.metadata.generation
        && s.updated_replicas.unwrap_or(0) >= want
        && s.replicas.unwrap_or(0) <= s.updated_replicas.unwrap_or(0)
        && s.available_replicas.unwrap_or(0) >= s.updated_replicas.unwrap_or(0)
        && condition(d, "Progressing")
            .and_then(|c| c.reason)
            .as_deref()
            != Some("ProgressDeadlineExceeded")
}

/// Marks pods ready until the rollout is done, asserting at every observation that at least
/// `min_ready` ready pods exist and (for Recreate) that old and new pods never coexist.
async fn drive_rollout(h: &Harness, min_ready: usize, exclusive: bool) -> Deployment {
    eventually("the rollout to finish", || async move {
        let pods = h.pods("app=web").await;
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        assert!(
            ready >= min_ready,
            "only {ready} ready pods, want at least {min_ready}: {:?}",
            names(&pods)
        );
        if exclusive {
            let owners: std::collections::HashSet<Option<String>> =
                pods.iter().map(|p| controller_uid(&p.metadata)).collect();
            assert!(
                owners.len() <= 1,
                "pods of two replica sets at once: {:?}",
                names(&pods)
            );
        }
        // Kubelet: new pods become ready one at a time, after a moment in which the controllers
        // can act on the not-ready pod (so the intermediate states get observed).
        if let Some(pod) = pods.iter().find(|p| !is_ready(p)) {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            h.mark_ready(pod).await;
        }
        let d: Deployment = h.api().get("web").await.ok()?;
        rollout_done(&d).then_some(d)
    })
    .await
}

fn names(pods: &[Pod]) -> Vec<(String, bool)> {
    pods.iter()
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), is_ready(p)))
        .collect()
}

#[tokio::test]
async fn a_new_deployment_gets_one_replica_set_at_revision_1_and_completes() {
    let h = start().await;
    let d = deployment(&h, 3, json!({"type": "RollingUpdate"})).await;
    let h = &h;
    let rs = replica_set_for(h, "nginx:1.25").await;
    let name = rs.metadata.name.clone().expect("name");
    let hash = rs
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .expect("hash label");
    assert_eq!(name, format!("web-{hash}"));
    assert!(
        hash.chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{hash}"
    );
    let spec = rs.spec.as_ref().expect("spec");
    assert_eq!(
        spec.selector
            .match_labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash")),
        Some(&hash)
    );
    assert_eq!(controller_uid(&rs.metadata), d.metadata.uid);
    assert_eq!(annotation(&rs.metadata, REVISION).as_deref(), Some("1"));
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("3")
    );
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("4")
    );
    assert_eq!(replicas(&rs), 3);
    let scaled = format!("Scaled up replica set {name} from 0 to 3");
    let scaled = &scaled;
    eventually("the ScalingReplicaSet event", || async move {
        h.events("web", "ScalingReplicaSet")
            .await
            .contains(scaled)
            .then_some(())
    })
    .await;

    let progressing = eventually("Progressing while pods start", || async {
        let d: Deployment = h.api().get("web").await.ok()?;
        condition(&d, "Progressing")
    })
    .await;
    assert_eq!(progressing.status, "True");
    assert!(
        ["NewReplicaSetCreated", "ReplicaSetUpdated"]
            .contains(&progressing.reason.as_deref().unwrap_or_default()),
        "{progressing:?}"
    );

    let done = drive_rollout(h, 0, false).await;
    assert_eq!(annotation(&done.metadata, REVISION).as_deref(), Some("1"));
    let status = done.status.clone().expect("status");
    assert_eq!(status.observed_generation, done.metadata.generation);
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas,
            status.unavailable_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3), Some(0))
    );
    let available = condition(&done, "Available").expect("Available");
    assert_eq!(
        (
            available.status.as_str(),
            available.reason.as_deref(),
            available.message.as_deref()
        ),
        (
            "True",
            Some("MinimumReplicasAvailable"),
            Some("Deployment has minimum availability.")
        )
    );
    let done: Deployment = eventually("Progressing NewReplicaSetAvailable", || async {
        let d: Deployment = h.api().get("web").await.ok()?;
        (condition(&d, "Progressing")?.reason.as_deref() == Some("NewReplicaSetAvailable"))
            .then_some(d)
    })
    .await;
    let progressing = condition(&done, "Progressing").expect("Progressing");
    assert_eq!(
        progressing.message,
        Some(format!(
            "ReplicaSet \"{name}\" has successfully progressed."
        ))
    );
    assert_eq!(h.pods("app=web").await.len(), 3);
    assert_eq!(replica_sets(h).await.len(), 1);
}

#[tokio::test]
async fn rolling_update_keeps_availability_and_undo_reuses_the_old_replica_set() {
    let h = start().await;
    let h = &h;
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    deployment(h, 4, strategy).await;
    drive_rollout(h, 0, false).await;
    let first = replica_set_for(h, "nginx:1.25").await;

    // Change the image: a second replica set, never fewer than 4 - 1 ready pods.
    let _: Deployment = h
        .merge_patch("web", json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}}))
        .await;
    let done = drive_rollout(h, 3, false).await;
    let second = replica_set_for(h, "nginx:1.26").await;
    assert_ne!(first.metadata.name, second.metadata.name);
    assert_eq!(annotation(&second.metadata, REVISION).as_deref(), Some("2"));
    assert_eq!(annotation(&done.metadata, REVISION).as_deref(), Some("2"));
    let old: ReplicaSet = eventually("the old replica set at 0", || async {
        let rs: ReplicaSet = h.api().get(first.metadata.name.as_deref()?).await.ok()?;
        (replicas(&rs) == 0 && rs.status.as_ref()?.replicas == 0).then_some(rs)
    })
    .await;
    assert_eq!(annotation(&old.metadata, REVISION).as_deref(), Some("1"));
    let pods = h.pods("app=web").await;
    assert_eq!(pods.len(), 4);
    assert!(
        pods.iter()
            .all(|p| controller_uid(&p.metadata) == second.metadata.uid)
    );
    let first_name = first.metadata.name.clone().expect("name");
    let second_name = second.metadata.name.clone().expect("name");
    let events = h.events("web", "ScalingReplicaSet").await;
    assert!(
        events.contains(&format!("Scaled up replica set {second_name} from 0 to 1")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with(&format!("Scaled down replica set {first_name} from "))),
        "{events:?}"
    );

    // `kubectl rollout undo`: the template goes back; the first replica set is reused at revision 3.
    let _: Deployment = h
        .merge_patch("web", json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}))
        .await;
    let done = drive_rollout(h, 3, false).await;
    let rss = replica_sets(h).await;
    assert_eq!(
        rss.len(),
        2,
        "no third replica set: {:?}",
        rss.iter().map(|r| &r.metadata.name).collect::<Vec<_>>()
    );
    let reused: ReplicaSet = h.api().get(&first_name).await.expect("first replica set");
    assert_eq!(replicas(&reused), 4);
    assert_eq!(annotation(&reused.metadata, REVISION).as_deref(), Some("3"));
    assert_eq!(
        annotation(
            &reused.metadata,
            "deployment.kubernetes.io/revision-history"
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(annotation(&done.metadata, REVISION).as_deref(), Some("3"));
    let progressing = eventually("Progressing NewReplicaSetAvailable", || async {
        let d: Deployment = h.api().get("web").await.ok()?;
        condition(&d, "Progressing")
            .filter(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"))
    })
    .await;
    assert_eq!(
        progressing.message,
        Some(format!(
            "ReplicaSet \"{first_name}\" has successfully progressed."
        ))
    );
}

#[tokio::test]
async fn recreate_removes_old_pods_before_creating_new_ones() {
    let h = start().await;
    let h = &h;
    deployment(h, 2, json!({"type": "Recreate"})).await;
    drive_rollout(h, 0, true).await;
    let _: Deployment = h
        .merge_patch("web", json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}}))
        .await;
    drive_rollout(h, 0, true).await;
    let new = replica_set_for(h, "nginx:1.26").await;
    let old = replica_set_for(h, "nginx:1.25").await;
    assert_eq!((replicas(&new), replicas(&old)), (2, 0));
    assert_eq!(annotation(&new.metadata, REVISION).as_deref(), Some("2"));
}

#[tokio::test]
async fn scaling_resizes_the_replica_set_without_a_new_revision() {
    let h = start().await;
    let h = &h;
    deployment(h, 2, json!({"type": "RollingUpdate"})).await;
    drive_rollout(h, 0, false).await;
    let d: Deployment = h.merge_patch("web", json!({"spec": {"replicas": 5}})).await;
    let generation = d.metadata.generation;
    let done = drive_rollout(h, 0, false).await;
    assert!(done.status.as_ref().and_then(|s| s.observed_generation) >= generation);
    let rss = replica_sets(h).await;
    assert_eq!(rss.len(), 1);
    assert_eq!(replicas(&rss[0]), 5);
    assert_eq!(annotation(&rss[0].metadata, REVISION).as_deref(), Some("1"));
    assert_eq!(
        annotation(
            &rss[0].metadata,
            "deployment.kubernetes.io/desired-replicas"
        )
        .as_deref(),
        Some("5")
    );
    assert_eq!(h.pods("app=web").await.len(), 5);
    let _: Deployment = h.merge_patch("web", json!({"spec": {"replicas": 1}})).await;
    eventually("one pod left", || async {
        (h.pods("app=web").await.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_paused_deployment_does_not_roll_out_until_resumed() {
    let h = start().await;
    let h = &h;
    deployment(h, 2, json!({"type": "RollingUpdate"})).await;
    drive_rollout(h, 0, false).await;
    let _: Deployment = h
        .merge_patch("web", json!({"spec": {"paused": true}}))
        .await;
    let d: Deployment = h
        .merge_patch("web", json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}}))
        .await;
    let generation = d.metadata.generation;
    let paused = eventually("the paused generation observed", || async {
        let d: Deployment = h.api().get("web").await.ok()?;
        (d.status.as_ref()?.observed_generation == generation).then_some(d)
    })
    .await;
    let progressing = condition(&paused, "Progressing").expect("Progressing");
    assert_eq!(
        (
            progressing.status.as_str(),
            progressing.reason.as_deref(),
            progressing.message.as_deref()
        ),
        (
            "Unknown",
            Some("DeploymentPaused"),
            Some("Deployment is paused")
        )
    );
    // Scaling still works while paused; rolling out does not.
    let _: Deployment = h.merge_patch("web", json!({"spec": {"replicas": 3}})).await;
    eventually("three pods", || async {
        (h.pods("app=web").await.len() == 3).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let rss = replica_sets(h).await;
    assert_eq!(rss.len(), 1, "no new replica set while paused");
    assert_eq!(image(&rss[0]).as_deref(), Some("nginx:1.25"));

    let _: Deployment = h
        .merge_patch("web", json!({"spec": {"paused": false}}))
        .await;
    drive_rollout(h, 0, false).await;
    let new = replica_set_for(h, "nginx:1.26").await;
    assert_eq!(replicas(&new), 3);
}

#[tokio::test]
async fn rollout_restart_creates_a_new_replica_set_and_history_is_limited() {
    let h = start().await;
    let h = &h;
    let d: Deployment = h
        .create(json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "revisionHistoryLimit": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": template(json!({"app": "web"}), "nginx:1.25"),
            }
        }))
        .await;
    assert!(d.metadata.uid.is_some());
    drive_rollout(h, 0, false).await;
    for (i, at) in ["2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z"]
        .iter()
        .enumerate()
    {
        // What `kubectl rollout restart` patches.
        let _: Deployment = h
            .merge_patch(
                "web",
                json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}}),
            )
            .await;
        let done = drive_rollout(h, 0, false).await;
        let revision = (i + 2).to_string();
        assert_eq!(annotation(&done.metadata, REVISION), Some(revision));
    }
    // Three revisions, a history limit of one: the current and one old replica set remain.
    let revisions: BTreeMap<String, i32> = eventually("old replica sets cleaned up", || async {
        let rss = replica_sets(h).await;
        (rss.len() == 2).then(|| {
            rss.iter()
                .map(|rs| {
                    (
                        annotation(&rs.metadata, REVISION).unwrap_or_default(),
                        replicas(rs),
                    )
                })
                .collect()
        })
    })
    .await;
    assert_eq!(
        revisions,
        BTreeMap::from([("2".to_owned(), 0), ("3".to_owned(), 1)])
    );
}
