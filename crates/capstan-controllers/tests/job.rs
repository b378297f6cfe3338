//! The Job controller on a TestCluster (the test plays kubelet by setting pod phases): completions
//! and parallelism, the tracking finalizer, backoffLimit, Indexed mode, suspend, activeDeadline,
//! ttlSecondsAfterFinished and the 1.33 conditions (SuccessCriteriaMet/FailureTarget first).

mod support;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use support::{Harness, eventually, finish_pod, gone, start};

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

async fn job(h: &Harness, name: &str, spec: serde_json::Value) -> Job {
    let mut spec = spec;
    spec["template"] = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
    h.create(json!({"metadata": {"name": name}, "spec": spec}))
        .await
}

/// The Job's active pods (not finished, not being deleted), by name.
async fn active(h: &Harness, name: &str) -> Vec<Pod> {
    h.pods(&format!("batch.kubernetes.io/job-name={name}"))
        .await
        .into_iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect()
}

async fn wait_active(h: &Harness, name: &str, n: usize) -> Vec<Pod> {
    eventually(&format!("{n} active pods of {name}"), || async {
        let pods = active(h, name).await;
        (pods.len() == n).then_some(pods)
    })
    .await
}

fn cond<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

async fn wait_condition(h: &Harness, name: &str, type_: &str) -> Job {
    eventually(&format!("{name} {type_}"), || async {
        let j = h.api::<Job>().get(name).await.expect("get");
        cond(&j, type_).is_some().then_some(j)
    })
    .await
}

fn pod_name(p: &Pod) -> &str {
    p.metadata.name.as_deref().expect("name")
}

#[tokio::test]
async fn completions_with_parallelism_complete_once_enough_pods_succeed() {
    let h = start().await;
    let j = job(&h, "calc", json!({"completions": 3, "parallelism": 2})).await;
    let pods = wait_active(&h, "calc", 2).await;
    let uid = j.metadata.uid.clone().expect("uid");
    for pod in &pods {
        let labels = pod.metadata.labels.as_ref().expect("labels");
        for key in ["batch.kubernetes.io/controller-uid", "controller-uid"] {
            assert_eq!(labels.get(key), Some(&uid), "{key}");
        }
        assert_eq!(labels.get("job-name").map(String::as_str), Some("calc"));
        assert!(
            pod.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == FINALIZER)
        );
        assert!(pod_name(pod).starts_with("calc-"));
    }

    finish_pod(&h.api(), pod_name(&pods[0]), "Succeeded").await;
    // One more pod is started for the third completion; the finished one loses its finalizer.
    eventually("a replacement and the count", || async {
        let j = h.api::<Job>().get("calc").await.expect("get");
        let s = j.status?;
        let pods = active(&h, "calc").await;
        (s.succeeded == Some(1) && pods.len() == 2).then_some(())
    })
    .await;
    let first = h.api::<Pod>().get(pod_name(&pods[0])).await.expect("get");
    assert!(
        !first
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );

    for pod in active(&h, "calc").await {
        finish_pod(&h.api(), pod_name(&pod), "Succeeded").await;
    }
    let j = wait_condition(&h, "calc", "Complete").await;
    let status = j.status.clone().expect("status");
    assert_eq!(
        (status.succeeded, status.failed, status.active),
        (Some(3), None, None)
    );
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let met = cond(&j, "SuccessCriteriaMet").expect("SuccessCriteriaMet");
    assert_eq!(met.reason.as_deref(), Some("CompletionsReached"));
    assert_eq!(
        cond(&j, "Complete").and_then(|c| c.reason.as_deref()),
        Some("CompletionsReached")
    );
    assert!(!h.events("calc", "Completed").await.is_empty());
}

#[tokio::test]
async fn failures_beyond_the_backoff_limit_fail_the_job() {
    let h = start().await;
    job(&h, "flaky", json!({"backoffLimit": 1})).await;
    for round in 0..2 {
        let pods = wait_active(&h, "flaky", 1).await;
        finish_pod(&h.api(), pod_name(&pods[0]), "Failed").await;
        if round == 0 {
            eventually("the failure counted", || async {
                let s = h.api::<Job>().get("flaky").await.expect("get").status?;
                (s.failed == Some(1)).then_some(())
            })
            .await;
        }
    }
    let j = wait_condition(&h, "flaky", "Failed").await;
    let failed = cond(&j, "Failed").expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        failed.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert!(cond(&j, "FailureTarget").is_some());
    assert_eq!(j.status.as_ref().and_then(|s| s.failed), Some(2));
    assert!(active(&h, "flaky").await.is_empty());
}

#[tokio::test]
async fn indexed_jobs_run_one_pod_per_index_and_record_completed_indexes() {
    let h = start().await;
    job(
        &h,
        "idx",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
    )
    .await;
    let pods = wait_active(&h, "idx", 3).await;
    let mut indexes: Vec<String> = pods
        .iter()
        .map(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("batch.kubernetes.io/job-completion-index"))
                .cloned()
                .expect("index")
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    let one = pods
        .iter()
        .find(|p| pod_name(p).starts_with("idx-1-"))
        .expect("pod of index 1");
    assert_eq!(
        one.spec.as_ref().and_then(|s| s.hostname.as_deref()),
        Some("idx-1")
    );
    finish_pod(&h.api(), pod_name(one), "Succeeded").await;
    eventually("completedIndexes 1", || async {
        let s = h.api::<Job>().get("idx").await.expect("get").status?;
        (s.completed_indexes.as_deref() == Some("1")).then_some(())
    })
    .await;
    // A failed index is retried with a new pod for the same index.
    let zero = pods
        .iter()
        .find(|p| pod_name(p).starts_with("idx-0-"))
        .expect("index 0");
    finish_pod(&h.api(), pod_name(zero), "Failed").await;
    let retried = eventually("index 0 retried", || async {
        active(&h, "idx")
            .await
            .into_iter()
            .find(|p| pod_name(p).starts_with("idx-0-") && p.metadata.uid != zero.metadata.uid)
    })
    .await;
    for pod in [retried]
        .iter()
        .chain(pods.iter().filter(|p| pod_name(p).starts_with("idx-2-")))
    {
        finish_pod(&h.api(), pod_name(pod), "Succeeded").await;
    }
    let j = wait_condition(&h, "idx", "Complete").await;
    let s = j.status.expect("status");
    assert_eq!(s.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!((s.succeeded, s.failed), (Some(3), Some(1)));
}

#[tokio::test]
async fn suspend_deletes_active_pods_and_resume_starts_again() {
    let h = start().await;
    job(
        &h,
        "later",
        json!({"suspend": true, "parallelism": 2, "completions": 2}),
    )
    .await;
    let j = wait_condition(&h, "later", "Suspended").await;
    assert_eq!(
        cond(&j, "Suspended").and_then(|c| c.reason.as_deref()),
        Some("JobSuspended")
    );
    assert!(active(&h, "later").await.is_empty());
    assert!(
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .is_none()
    );

    h.merge_patch::<Job>("later", json!({"spec": {"suspend": false}}))
        .await;
    wait_active(&h, "later", 2).await;
    eventually("a start time and the Suspended condition False", || async {
        let j = h.api::<Job>().get("later").await.expect("get");
        let status = j.status?;
        let resumed = status.conditions.iter().flatten().any(|c| {
            c.type_ == "Suspended"
                && c.status == "False"
                && c.reason.as_deref() == Some("JobResumed")
        });
        (resumed && status.start_time.is_some()).then_some(())
    })
    .await;
    h.merge_patch::<Job>("later", json!({"spec": {"suspend": true}}))
        .await;
    wait_active(&h, "later", 0).await;
    let j = wait_condition(&h, "later", "Suspended").await;
    assert_eq!(
        j.status.as_ref().and_then(|s| s.failed),
        None,
        "suspension is not a failure"
    );
}

#[tokio::test]
async fn active_deadline_fails_the_job_and_ttl_deletes_finished_jobs() {
    let h = start().await;
    // Not waiting to see the pod run: on a slow host the 1 s deadline can pass before a poll does.
    let created = std::time::Instant::now();
    job(&h, "slow", json!({"activeDeadlineSeconds": 1})).await;
    let j = wait_condition(&h, "slow", "Failed").await;
    assert!(
        created.elapsed() >= std::time::Duration::from_secs(1),
        "failed before its deadline: {j:?}"
    );
    assert_eq!(
        cond(&j, "Failed").and_then(|c| c.reason.as_deref()),
        Some("DeadlineExceeded")
    );
    assert!(active(&h, "slow").await.is_empty());

    job(&h, "brief", json!({"ttlSecondsAfterFinished": 0})).await;
    let pods = wait_active(&h, "brief", 1).await;
    finish_pod(&h.api(), pod_name(&pods[0]), "Succeeded").await;
    gone(&h.api::<Job>(), "brief").await;
}

#[tokio::test]
async fn deleting_a_job_releases_and_removes_its_pods() {
    let h = start().await;
    job(&h, "doomed", json!({"parallelism": 2, "completions": 4})).await;
    let pods = wait_active(&h, "doomed", 2).await;
    let api: Api<Job> = h.api();
    api.delete("doomed", &DeleteParams::background())
        .await
        .expect("delete");
    for pod in &pods {
        gone(&h.api::<Pod>(), pod_name(pod)).await;
    }
}
