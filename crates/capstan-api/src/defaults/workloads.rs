//! apps/v1 and batch/v1 defaults (`pkg/apis/apps/v1/defaults.go`, `pkg/apis/batch/v1/defaults.go`,
//! and the Job selector generation of the Job registry strategy).

use serde_json::{Map, Value, json};

use super::pod::{default_resource_lists, default_template};
use super::{each, with};
use crate::validation::json::{default_field, default_str, ensure_obj, get, meta, obj, str_of};

fn spec_mut(v: &mut Value) -> Option<&mut Value> {
    ensure_obj(v, "spec")?;
    v.get_mut("spec")
}

pub(crate) fn default_deployment(d: &mut Value) {
    let Some(spec) = spec_mut(d) else { return };
    default_field(spec, "replicas", json!(1));
    if let Some(strategy) = ensure_obj(spec, "strategy") {
        let ty = strategy.get("type").and_then(Value::as_str).unwrap_or("");
        if ty.is_empty() {
            strategy.insert("type".to_owned(), json!("RollingUpdate"));
        }
    }
    if let Some(strategy) = spec.get_mut("strategy")
        && str_of(strategy, "type") == "RollingUpdate"
        && let Some(ru) = ensure_obj(strategy, "rollingUpdate")
    {
        for f in ["maxUnavailable", "maxSurge"] {
            if ru.get(f).is_none_or(Value::is_null) {
                ru.insert(f.to_owned(), json!("25%"));
            }
        }
    }
    default_field(spec, "revisionHistoryLimit", json!(10));
    default_field(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec, "template");
}

pub(crate) fn default_replica_set(rs: &mut Value) {
    let Some(spec) = spec_mut(rs) else { return };
    default_field(spec, "replicas", json!(1));
    default_template(spec, "template");
}

pub(crate) fn default_stateful_set(sts: &mut Value) {
    let Some(spec) = spec_mut(sts) else { return };
    default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = ensure_obj(spec, "updateStrategy") {
        let ty = strategy.get("type").and_then(Value::as_str).unwrap_or("");
        if ty.is_empty() {
            strategy.insert("type".to_owned(), json!("RollingUpdate"));
            strategy
                .entry("rollingUpdate".to_owned())
                .or_insert_with(|| json!({}));
        }
    }
    if let Some(strategy) = spec.get_mut("updateStrategy")
        && str_of(strategy, "type") == "RollingUpdate"
    {
        with(strategy, "rollingUpdate", |ru| {
            default_field(ru, "partition", json!(0))
        });
    }
    if let Some(policy) = ensure_obj(spec, "persistentVolumeClaimRetentionPolicy") {
        for f in ["whenDeleted", "whenScaled"] {
            let empty = policy
                .get(f)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if empty {
                policy.insert(f.to_owned(), json!("Retain"));
            }
        }
    }
    default_field(spec, "replicas", json!(1));
    default_field(spec, "revisionHistoryLimit", json!(10));
    default_template(spec, "template");
    each(spec, "volumeClaimTemplates", |pvc| {
        with(pvc, "spec", |s| {
            default_field(s, "volumeMode", json!("Filesystem"));
            with(s, "resources", default_resource_lists);
        });
        if let Some(status) = ensure_obj(pvc, "status") {
            let empty = status
                .get("phase")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if empty {
                status.insert("phase".to_owned(), json!("Pending"));
            }
        }
    });
}

pub(crate) fn default_daemon_set(ds: &mut Value) {
    let Some(spec) = spec_mut(ds) else { return };
    if let Some(strategy) = ensure_obj(spec, "updateStrategy") {
        let ty = strategy.get("type").and_then(Value::as_str).unwrap_or("");
        if ty.is_empty() {
            strategy.insert("type".to_owned(), json!("RollingUpdate"));
        }
    }
    if let Some(strategy) = spec.get_mut("updateStrategy")
        && str_of(strategy, "type") == "RollingUpdate"
        && let Some(ru) = ensure_obj(strategy, "rollingUpdate")
    {
        for (f, v) in [("maxUnavailable", 1), ("maxSurge", 0)] {
            if ru.get(f).is_none_or(Value::is_null) {
                ru.insert(f.to_owned(), json!(v));
            }
        }
    }
    default_field(spec, "revisionHistoryLimit", json!(10));
    default_template(spec, "template");
}

/// `SetDefaults_Job` plus selector generation from `metadata.uid` (the Job strategy's
/// `generateSelector`), unless `manualSelector` is true.
pub(crate) fn default_job(job: &mut Value) {
    let name = str_of(meta(job), "name").to_owned();
    let uid = str_of(meta(job), "uid").to_owned();
    let Some(spec) = spec_mut(job) else { return };
    default_job_spec(spec);
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual && !uid.is_empty() {
        generate_selector(spec, &name, &uid);
    }
    // Jobs take their template's labels when they have none of their own.
    let template_labels = spec
        .get("template")
        .map(meta)
        .and_then(|m| obj(m, "labels"))
        .filter(|l| !l.is_empty())
        .cloned();
    if let Some(labels) = template_labels
        && let Some(m) = ensure_obj(job, "metadata")
    {
        let empty = m
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if empty {
            m.insert("labels".to_owned(), Value::Object(labels));
        }
    }
}

fn default_job_spec(spec: &mut Value) {
    if get(spec, "completions").is_none() && get(spec, "parallelism").is_none() {
        default_field(spec, "completions", json!(1));
    }
    default_field(spec, "parallelism", json!(1));
    let backoff = if get(spec, "backoffLimitPerIndex").is_some() {
        i64::from(i32::MAX)
    } else {
        6
    };
    default_field(spec, "backoffLimit", json!(backoff));
    default_field(spec, "completionMode", json!("NonIndexed"));
    default_field(spec, "suspend", json!(false));
    let replacement = if get(spec, "podFailurePolicy").is_some() {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default_field(spec, "podReplacementPolicy", json!(replacement));
    default_field(spec, "manualSelector", json!(false));
    with(spec, "podFailurePolicy", |pfp| {
        each(pfp, "rules", |rule| {
            each(rule, "onPodConditions", |c| {
                default_str(c, "status", "True")
            });
        });
    });
    default_template(spec, "template");
}

fn generate_selector(spec: &mut Value, name: &str, uid: &str) {
    if let Some(template) = ensure_obj(spec, "template") {
        let template_meta = template
            .entry("metadata".to_owned())
            .or_insert_with(|| json!({}));
        if let Some(labels) = ensure_obj(template_meta, "labels") {
            for (k, v) in [
                ("job-name", name),
                ("batch.kubernetes.io/job-name", name),
                ("controller-uid", uid),
                ("batch.kubernetes.io/controller-uid", uid),
            ] {
                labels.entry(k.to_owned()).or_insert_with(|| json!(v));
            }
        }
    }
    if let Some(selector) = ensure_obj(spec, "selector") {
        let match_labels = selector
            .entry("matchLabels".to_owned())
            .or_insert_with(|| json!({}));
        if !match_labels.is_object() {
            *match_labels = json!({});
        }
        if let Some(m) = match_labels.as_object_mut() {
            m.entry("batch.kubernetes.io/controller-uid".to_owned())
                .or_insert_with(|| json!(uid));
        }
    }
}

pub(crate) fn default_cron_job(cj: &mut Value) {
    let Some(spec) = spec_mut(cj) else { return };
    default_str(spec, "concurrencyPolicy", "Allow");
    default_field(spec, "suspend", json!(false));
    default_field(spec, "successfulJobsHistoryLimit", json!(3));
    default_field(spec, "failedJobsHistoryLimit", json!(1));
    with(spec, "jobTemplate", |t| {
        with(t, "spec", |s| default_template(s, "template"));
    });
}
