//! Jobs and cron jobs.

use k8s_openapi::api::batch::v1::{CronJobSpec, CronJobStatus, JobSpec, JobStatus};
use serde_json::Value;

use super::{Row, age, cells, containers_and_images};
use crate::columns::{self, Column, doc};
use crate::json::{arr_at, get, int_at, name, opt_int, opt_str, str_at};
use crate::labels::format_label_selector;
use crate::time::{self, Time, human_duration};

pub(super) fn job_columns() -> Vec<Column> {
    let [containers, images] = columns::containers_images();
    vec![
        columns::name(),
        Column::new("Status", "string", "Status of the job."),
        Column::new("Completions", "string", doc::<JobStatus>("succeeded")),
        Column::new("Duration", "string", "Time required to complete the job."),
        columns::age(),
        containers,
        images,
        Column::new("Selector", "string", doc::<JobSpec>("selector")).wide(),
    ]
}

/// `hasJobCondition`: the first condition of that type, if true.
fn has_condition(job: &Value, kind: &str) -> bool {
    arr_at(job, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == kind)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

pub(super) fn job_row(job: &Value, now: Time) -> Row {
    let succeeded = int_at(job, &["status", "succeeded"]);
    let completions = match opt_int(job, &["spec", "completions"]) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match opt_int(job, &["spec", "parallelism"]).unwrap_or(1) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = Time::from_value(get(job, &["status", "startTime"]));
    let completion = Time::from_value(get(job, &["status", "completionTime"]));
    let duration = match (start, completion) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.since(start)),
        (Some(start), Some(completion)) => human_duration(completion.since(start)),
    };
    let status = if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if get(job, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers_and_images(get(job, &["spec", "template", "spec"]));
    cells![
        name(job),
        status,
        completions,
        duration,
        age(job, now),
        names,
        images,
        format_label_selector(get(job, &["spec", "selector"])),
    ]
}

pub(super) fn cron_job_columns() -> Vec<Column> {
    let [containers, images] = columns::containers_images();
    vec![
        columns::name(),
        Column::new("Schedule", "string", doc::<CronJobSpec>("schedule")),
        Column::new("Timezone", "string", doc::<CronJobSpec>("timeZone")),
        Column::new("Suspend", "boolean", doc::<CronJobSpec>("suspend")),
        Column::new("Active", "integer", doc::<CronJobStatus>("active")),
        Column::new(
            "Last Schedule",
            "string",
            doc::<CronJobStatus>("lastScheduleTime"),
        ),
        columns::age(),
        containers,
        images,
        Column::new("Selector", "string", doc::<JobSpec>("selector")).wide(),
    ]
}

pub(super) fn cron_job_row(cron_job: &Value, now: Time) -> Row {
    let last_schedule = match Time::from_value(get(cron_job, &["status", "lastScheduleTime"])) {
        Some(t) => time::age(Some(t), now),
        None if get(cron_job, &["status", "lastScheduleTime"]).is_some() => "<unknown>".to_owned(),
        None => "<none>".to_owned(),
    };
    // `suspend` defaults to false.
    let suspend = match get(cron_job, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True",
        _ => "False",
    };
    let job_spec = get(cron_job, &["spec", "jobTemplate", "spec"]);
    let (names, images) =
        containers_and_images(job_spec.and_then(|s| get(s, &["template", "spec"])));
    cells![
        name(cron_job),
        str_at(cron_job, &["spec", "schedule"]),
        opt_str(cron_job, &["spec", "timeZone"]).unwrap_or("<none>"),
        suspend,
        arr_at(cron_job, &["status", "active"]).len() as i64,
        last_schedule,
        age(cron_job, now),
        names,
        images,
        format_label_selector(job_spec.and_then(|s| get(s, &["selector"]))),
    ]
}
