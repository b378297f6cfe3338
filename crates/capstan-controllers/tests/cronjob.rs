//! The CronJob controller on a TestCluster (with the Job controller; the test plays kubelet). A
//! schedule's first run would be up to a minute away, so tests move `status.lastScheduleTime` into
//! the past: the most recent missed minute is then due at once.

mod support;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use support::{Harness, eventually, finish_pod, gone, start};

fn job_template() -> serde_json::Value {
    json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
}

async fn cronjob(h: &Harness, name: &str, extra: serde_json::Value) -> CronJob {
    let mut spec = json!({"schedule": "* * * * *", "jobTemplate": job_template()});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    h.create(json!({"metadata": {"name": name}, "spec": spec}))
        .await
}

/// Pretends the last run was `minutes` ago.
async fn last_scheduled(h: &Harness, name: &str, minutes: i64) {
    let past = Timestamp::from_second(Timestamp::now().as_second() - minutes * 60).expect("time");
    h.api::<CronJob>()
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lastScheduleTime": past.to_string()}})),
        )
        .await
        .expect("status");
}

async fn jobs_of(h: &Harness, cj: &CronJob) -> Vec<Job> {
    let uid = cj.metadata.uid.clone();
    let mut jobs: Vec<Job> = h
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|j| support::controller_uid(&j.metadata) == uid)
        .collect();
    jobs.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    jobs
}

#[tokio::test]
async fn a_due_schedule_starts_a_job_named_by_its_minute_and_records_its_success() {
    let h = start().await;
    let cj = cronjob(&h, "tick", json!({"successfulJobsHistoryLimit": 0})).await;
    last_scheduled(&h, "tick", 5).await;
    let job = eventually("a job", || async {
        jobs_of(&h, &cj).await.into_iter().next()
    })
    .await;
    let name = job.metadata.name.clone().expect("name");
    let minute = Timestamp::now().as_second() / 60;
    let suffix: i64 = name
        .strip_prefix("tick-")
        .expect("prefix")
        .parse()
        .expect("minutes");
    assert!(
        (minute - 1..=minute).contains(&suffix),
        "{name} vs minute {minute}"
    );
    let stamp = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("batch.kubernetes.io/cronjob-scheduled-timestamp"))
        .expect("annotation");
    assert_eq!(
        stamp.parse::<Timestamp>().expect("rfc3339").as_second(),
        suffix * 60
    );
    let status = eventually("status.active", || async {
        let s = h.api::<CronJob>().get("tick").await.expect("get").status?;
        s.active
            .as_ref()
            .is_some_and(|a| a.iter().any(|r| r.name.as_deref() == Some(name.as_str())))
            .then_some(s)
    })
    .await;
    assert_eq!(
        status.last_schedule_time.map(|t| t.0.as_second()),
        Some(suffix * 60)
    );
    assert!(!h.events("tick", "SuccessfulCreate").await.is_empty());

    // The Job runs one pod; when it succeeds the CronJob notes the success, then (history limit
    // 0) deletes the finished Job.
    let pod: Pod = eventually("the job's pod", || async {
        h.pods(&format!("batch.kubernetes.io/job-name={name}"))
            .await
            .into_iter()
            .next()
    })
    .await;
    finish_pod(
        &h.api(),
        pod.metadata.name.as_deref().expect("pod name"),
        "Succeeded",
    )
    .await;
    eventually("lastSuccessfulTime and no active job", || async {
        let s = h.api::<CronJob>().get("tick").await.expect("get").status?;
        (s.last_successful_time.is_some() && s.active.is_none()).then_some(())
    })
    .await;
    gone(&h.api::<Job>(), &name).await;
    let deleted = eventually("the SuccessfulDelete event", || async {
        let events = h.events("tick", "SuccessfulDelete").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(deleted, [format!("Deleted job {name}")]);
}

#[tokio::test]
async fn forbid_skips_while_a_job_runs_and_replace_replaces_it() {
    let h = start().await;
    for (name, policy) in [("forbid", "Forbid"), ("replace", "Replace")] {
        let cj = cronjob(
            &h,
            name,
            json!({"concurrencyPolicy": policy, "suspend": true}),
        )
        .await;
        // A running Job of this CronJob from an earlier run.
        let mut earlier = job_template();
        earlier["metadata"] = json!({"name": format!("{name}-1"), "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": name, "uid": cj.metadata.uid, "controller": true}]});
        h.create::<Job>(earlier).await;
        last_scheduled(&h, name, 5).await;
        h.merge_patch::<CronJob>(name, json!({"spec": {"suspend": false}}))
            .await;
    }
    eventually("Forbid to report the running job", || async {
        (!h.events("forbid", "JobAlreadyActive").await.is_empty()).then_some(())
    })
    .await;
    let forbid = h.api::<CronJob>().get("forbid").await.expect("get");
    assert_eq!(
        jobs_of(&h, &forbid).await.len(),
        1,
        "no second job under Forbid"
    );

    let replace = h.api::<CronJob>().get("replace").await.expect("get");
    let jobs = eventually("the replacement", || async {
        let jobs = jobs_of(&h, &replace).await;
        (jobs.len() == 1 && jobs[0].metadata.name.as_deref() != Some("replace-1")).then_some(jobs)
    })
    .await;
    assert!(
        jobs[0]
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("replace-"))
    );
    assert_eq!(
        h.events("replace", "SuccessfulDelete").await,
        ["Deleted job replace-1"]
    );
}

#[tokio::test]
async fn a_missed_start_past_the_deadline_is_skipped_and_suspend_holds_runs() {
    let h = start().await;
    // The only run time is three minutes ago; a 60 s starting deadline has passed.
    let minute = (Timestamp::now().as_second() / 60 - 3).rem_euclid(60);
    let late = cronjob(
        &h,
        "late",
        json!({"schedule": format!("{minute} * * * *"), "startingDeadlineSeconds": 60}),
    )
    .await;
    last_scheduled(&h, "late", 10).await;
    eventually("MissSchedule", || async {
        (!h.events("late", "MissSchedule").await.is_empty()).then_some(())
    })
    .await;
    assert!(jobs_of(&h, &late).await.is_empty());

    let held = cronjob(&h, "held", json!({"suspend": true})).await;
    last_scheduled(&h, "held", 5).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(jobs_of(&h, &held).await.is_empty(), "suspended: no job");
    h.merge_patch::<CronJob>("held", json!({"spec": {"suspend": false}}))
        .await;
    eventually("a job once resumed", || async {
        jobs_of(&h, &held).await.into_iter().next()
    })
    .await;
}
