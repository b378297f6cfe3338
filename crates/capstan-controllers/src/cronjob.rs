//! The CronJob controller (Kubernetes' `pkg/controller/cronjob`, the v2 controller): each sync
//! reconciles `status.active` with the CronJob's Jobs (recording `lastSuccessfulTime` when one
//! completes), then, unless suspended, finds the most recent unmet schedule time since
//! `lastScheduleTime` (or creation) in `spec.timeZone` (UTC by default), skips it when it is older
//! than `startingDeadlineSeconds`, applies `concurrencyPolicy` (Allow; Forbid skips while a Job is
//! active; Replace deletes the active ones) and creates the Job `<cronjob>-<scheduled time in
//! minutes since the epoch>` from `jobTemplate`, with the `batch.kubernetes.io/cronjob-scheduled-timestamp`
//! annotation. Finished Jobs beyond `successfulJobsHistoryLimit` (3) and `failedJobsHistoryLimit`
//! (1) are deleted, oldest first. The sync requeues itself for the next schedule time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;
use crate::util::cron::Schedule;
use crate::util::events::{EventType, Recorder};
use crate::util::{Error, is_conflict, is_not_found, owners};

/// The controller's name in events (`source.component`).
const COMPONENT: &str = "cronjob-controller";
/// The annotation holding a Job's scheduled time (RFC 3339).
const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this are reported (`TooManyMissedTimes`).
const MAX_MISSED: usize = 100;

struct State {
    client: kube::Client,
    recorder: Recorder,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("recorder", &self.recorder)
            .finish()
    }
}

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let state = Arc::new(State {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client: client.clone(),
    });
    Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client), watcher::Config::default())
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile, error_policy, state)
    .for_each(|result| {
        if let Err(error) = result {
            tracing::debug!(controller = "cronjob", %error, "reconcile failed");
        }
        futures::future::ready(())
    })
    .await;
}

fn error_policy(cj: Arc<CronJob>, error: &Error, _state: Arc<State>) -> Action {
    let name = cj.metadata.name.as_deref().unwrap_or_default();
    match error {
        Error::Api(e) if is_conflict(e) => Action::requeue(Duration::from_millis(200)),
        _ => {
            tracing::warn!(controller = "cronjob", name, %error, "sync failed, requeueing");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

async fn reconcile(cj: Arc<CronJob>, state: Arc<State>) -> Result<Action, Error> {
    let ns = cj.metadata.namespace.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let span =
        tracing::info_span!("reconcile", controller = "cronjob", key = %format!("{ns}/{name}"));
    sync(&cj, &state, &ns).instrument(span).await
}

/// `<cronjob>-<minutes since the epoch>` (`getJobName`).
pub(crate) fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The finished condition of a Job (`Complete` or `Failed`, True), if any.
fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The schedule times in `(since, now]`: the most recent one and how many there were (capped).
pub(crate) fn unmet_times(
    schedule: &Schedule,
    tz: &TimeZone,
    since: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, usize) {
    let mut last = None;
    let mut count = 0;
    let mut t = since;
    while let Some(next) = schedule.next_after(t, tz) {
        if next > now {
            break;
        }
        last = Some(next);
        count += 1;
        t = next;
        if count > MAX_MISSED {
            // Jump close to now: only the most recent time matters from here.
            let near = Timestamp::from_second(now.as_second() - 61 * 60).unwrap_or(now);
            if near > t {
                t = near;
            }
        }
    }
    (last, count)
}

async fn sync(cj: &CronJob, state: &State, ns: &str) -> Result<Action, Error> {
    let Some(spec) = cj.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let name = cj.metadata.name.clone().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(state.client.clone(), ns);
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| owners::controller_ref(&j.metadata).is_some_and(|r| r.uid == uid))
        .collect();
    let mut status = cj.status.clone().unwrap_or_default();

    // status.active follows the Jobs.
    let mut active: Vec<ObjectReference> = Vec::new();
    for job in &jobs {
        let listed = status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid == job.metadata.uid);
        match finished(job) {
            None => active.push(job_ref(job)),
            Some(condition) => {
                if listed {
                    state
                        .recorder
                        .publish(
                            cj,
                            EventType::Normal,
                            "SawCompletedJob",
                            format!(
                                "Saw completed job: {}, condition: {condition}",
                                job.metadata.name.as_deref().unwrap_or_default()
                            ),
                        )
                        .await;
                }
                if condition == "Complete" {
                    let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                    if done.is_some()
                        && status.last_successful_time.as_ref().map(|t| t.0)
                            < done.as_ref().map(|t| t.0)
                    {
                        status.last_successful_time = done;
                    }
                }
            }
        }
    }
    status.active = (!active.is_empty()).then_some(active);

    let mut requeue = None;
    let mut created = None;
    if cj.metadata.deletion_timestamp.is_none() && spec.suspend != Some(true) {
        let (outcome, next) = schedule_job(cj, state, ns, &jobs_api, &mut status).await?;
        requeue = next;
        created = outcome;
    }
    if let Some(job) = created.as_ref() {
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(job_ref(job));
    }
    if cj.status.as_ref() != Some(&status) {
        let api: Api<CronJob> = Api::namespaced(state.client.clone(), ns);
        let mut body = serde_json::to_value(&status).map_err(|e| Error::Invalid(e.to_string()))?;
        if status.active.is_none() {
            body["active"] = serde_json::Value::Null;
        }
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": body})),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    cleanup_history(cj, state, &jobs_api, &jobs).await?;
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Starts the Job of the most recent unmet schedule time, if due; returns it and when to look again.
async fn schedule_job(
    cj: &CronJob,
    state: &State,
    ns: &str,
    jobs_api: &Api<Job>,
    status: &mut CronJobStatus,
) -> Result<(Option<Job>, Option<Duration>), Error> {
    let Some(spec) = cj.spec.as_ref() else {
        return Ok((None, None));
    };
    let name = cj.metadata.name.clone().unwrap_or_default();
    let tz = match spec.time_zone.as_deref() {
        None => TimeZone::UTC,
        Some(zone) => match TimeZone::get(zone) {
            Ok(tz) => tz,
            Err(_) => {
                state
                    .recorder
                    .publish(
                        cj,
                        EventType::Warning,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {zone:?}"),
                    )
                    .await;
                return Ok((None, None));
            }
        },
    };
    let schedule = match Schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(error) => {
            state
                .recorder
                .publish(
                    cj,
                    EventType::Warning,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {error}", spec.schedule),
                )
                .await;
            return Ok((None, None));
        }
    };
    let now = Timestamp::now();
    let since = status
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    let (scheduled, missed) = unmet_times(&schedule, &tz, since, now);
    let next = schedule
        .next_after(now, &tz)
        .and_then(|t| u64::try_from(t.as_millisecond() - now.as_millisecond()).ok())
        .map(|ms| Duration::from_millis(ms + 100));
    let Some(scheduled) = scheduled else {
        return Ok((None, next));
    };
    if missed > MAX_MISSED {
        state
            .recorder
            .publish(
                cj,
                EventType::Warning,
                "TooManyMissedTimes",
                format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
            )
            .await;
    }
    if let Some(deadline) = spec.starting_deadline_seconds
        && scheduled.as_second() + deadline < now.as_second()
    {
        state
            .recorder
            .publish(
                cj,
                EventType::Warning,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")
                ),
            )
            .await;
        return Ok((None, next));
    }
    let job_name = job_name(&name, scheduled);
    let already = status
        .active
        .iter()
        .flatten()
        .any(|r| r.name.as_deref() == Some(job_name.as_str()));
    if already {
        return Ok((None, next));
    }
    let has_active = status.active.as_ref().is_some_and(|a| !a.is_empty());
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if has_active => {
            state
                .recorder
                .publish(
                    cj,
                    EventType::Normal,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                )
                .await;
            return Ok((None, next));
        }
        Some("Replace") if has_active => {
            for r in status.active.take().into_iter().flatten() {
                let job = r.name.clone().unwrap_or_default();
                match jobs_api
                    .delete(
                        &job,
                        &DeleteParams {
                            propagation_policy: Some(PropagationPolicy::Background),
                            ..Default::default()
                        },
                    )
                    .await
                {
                    Ok(_) => {
                        state
                            .recorder
                            .publish(
                                cj,
                                EventType::Normal,
                                "SuccessfulDelete",
                                format!("Deleted job {job}"),
                            )
                            .await;
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        _ => {}
    }

    let template = spec.job_template.clone();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled.in_tz("UTC").map_or_else(
            |_| scheduled.to_string(),
            |z| z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ),
    );
    let job = Job {
        metadata: ObjectMeta {
            name: Some(job_name.clone()),
            namespace: Some(ns.to_owned()),
            labels: meta.labels.or_else(|| Some(BTreeMap::new())),
            annotations: Some(annotations),
            owner_references: Some(vec![owners::new_controller_ref(cj)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    let created = match jobs_api.create(&PostParams::default(), &job).await {
        Ok(created) => {
            state
                .recorder
                .publish(
                    cj,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created job {job_name}"),
                )
                .await;
            created
        }
        Err(e) if is_conflict(&e) => {
            // Created by an earlier sync whose status write was lost: ours if it points at us.
            let existing = jobs_api.get(&job_name).await?;
            let ours = owners::controller_ref(&existing.metadata)
                .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
            if !ours {
                return Ok((None, next));
            }
            existing
        }
        Err(e) => {
            state
                .recorder
                .publish(
                    cj,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating job: {e}"),
                )
                .await;
            return Err(e.into());
        }
    };
    status.last_schedule_time = Some(Time(
        Timestamp::from_second(scheduled.as_second()).unwrap_or(scheduled),
    ));
    Ok((Some(created), next))
}

/// Deletes the oldest finished Jobs beyond the history limits.
async fn cleanup_history(
    cj: &CronJob,
    state: &State,
    api: &Api<Job>,
    jobs: &[Job],
) -> Result<(), Error> {
    let Some(spec) = cj.spec.as_ref() else {
        return Ok(());
    };
    for (condition, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j) == Some(condition))
            .collect();
        let limit = usize::try_from(limit).unwrap_or(0);
        if done.len() <= limit {
            continue;
        }
        let started = |j: &Job| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .or(j.metadata.creation_timestamp.as_ref())
                .map(|t| t.0)
        };
        done.sort_by_key(|j| (started(j), j.metadata.name.clone()));
        let excess = done.len() - limit;
        for job in done.into_iter().take(excess) {
            let name = job.metadata.name.as_deref().unwrap_or_default();
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => {
                    state
                        .recorder
                        .publish(
                            cj,
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("Deleted job {name}"),
                        )
                        .await;
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn job_names_use_minutes_since_the_epoch() {
        assert_eq!(
            job_name("hello", at("2025-03-01T10:00:00Z")),
            "hello-29013720"
        );
        assert_eq!(job_name("hello", at("1970-01-01T00:02:59Z")), "hello-2");
    }

    #[test]
    fn unmet_times_give_the_most_recent_and_the_count() {
        let every_minute = Schedule::parse("* * * * *").expect("schedule");
        let (last, count) = unmet_times(
            &every_minute,
            &TimeZone::UTC,
            at("2025-03-01T10:00:00Z"),
            at("2025-03-01T10:03:30Z"),
        );
        assert_eq!((last, count), (Some(at("2025-03-01T10:03:00Z")), 3));
        let (last, count) = unmet_times(
            &every_minute,
            &TimeZone::UTC,
            at("2025-03-01T10:00:00Z"),
            at("2025-03-01T10:00:59Z"),
        );
        assert_eq!((last, count), (None, 0));
        // Days of missed runs: counted past the cap, the most recent one still found quickly.
        let (last, count) = unmet_times(
            &every_minute,
            &TimeZone::UTC,
            at("2025-03-01T00:00:00Z"),
            at("2025-03-03T00:00:30Z"),
        );
        assert_eq!(last, Some(at("2025-03-03T00:00:00Z")));
        assert!(count > MAX_MISSED);
    }
}
