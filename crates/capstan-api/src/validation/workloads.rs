//! apps/v1 and batch/v1 workloads (`pkg/apis/apps/validation`, `pkg/apis/batch/validation`, and
//! the selector immutability their registry strategies add on update).

use serde_json::Value;

use super::cron::parse_standard;
use super::json::{arr, boolean, child, get, int, meta, opt_str, str_of};
use super::meta::{Selector, validate_label_selector, validate_labels};
use super::names::{is_dns1123_label, is_percent};
use super::pod::validate_pod_template;
use super::{
    FieldError, forbidden, gofmt, invalid_num, invalid_raw, invalid_str, nonnegative,
    not_supported, required,
};

/// The selector at `spec.selector`. `k8s-openapi` makes a missing selector `{}`, so an object
/// with neither `matchLabels` nor `matchExpressions` counts as absent (Go's nil).
fn selector_of(spec: &Value) -> Option<&Value> {
    get(spec, "selector")
        .filter(|s| get(s, "matchLabels").is_some() || get(s, "matchExpressions").is_some())
}

fn spec_of(v: &Value) -> &Value {
    v.get("spec").unwrap_or(&Value::Null)
}

fn template_of(spec: &Value) -> &Value {
    spec.get("template").unwrap_or(&Value::Null)
}

/// The selector checks shared by Deployment, ReplicaSet and StatefulSet: required, well-formed,
/// not empty. Returns the parsed selector (`None` when it does not convert).
fn validate_required_selector<'a>(
    errs: &mut Vec<FieldError>,
    spec: &'a Value,
    kind: &str,
) -> Option<Option<Selector<'a>>> {
    let sel = selector_of(spec);
    match sel {
        None => errs.push(required("spec.selector", "")),
        Some(s) => {
            validate_label_selector(errs, Some(s), "spec.selector");
            if arr(s, "matchExpressions").is_empty()
                && super::json::obj(s, "matchLabels").is_none_or(|m| m.is_empty())
            {
                errs.push(invalid_raw(
                    "spec.selector",
                    gofmt::label_selector(Some(s)),
                    format!("empty selector is invalid for {kind}"),
                ));
            }
        }
    }
    Selector::parse(sel).ok()
}

/// `selector` must match the template labels. A nil selector matches nothing (Kubernetes'
/// `labels.Nothing()`), an empty one everything.
fn check_selector_matches(
    errs: &mut Vec<FieldError>,
    selector: &Option<Selector<'_>>,
    template: &Value,
    path: &str,
) {
    let m = meta(template);
    let ok = match selector {
        None => false,
        Some(s) => s.is_empty() || s.matches(m, "labels"),
    };
    if !ok {
        errs.push(invalid_raw(
            child(path, "metadata.labels"),
            gofmt::string_map(m, "labels"),
            "`selector` does not match template `labels`",
        ));
    }
}

/// Template checks for controllers whose pods always restart.
fn validate_always_restart_template(errs: &mut Vec<FieldError>, template: &Value, kind: &str) {
    let spec = spec_of(template);
    let policy = str_of(spec, "restartPolicy");
    if policy != "Always" {
        errs.push(not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    if get(spec, "activeDeadlineSeconds").is_some() {
        errs.push(forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// Selector immutability on update (apps/v1 strategies).
fn validate_selector_immutable(
    errs: &mut Vec<FieldError>,
    new: &Value,
    old: Option<&Value>,
    path: &str,
) {
    let Some(old) = old else { return };
    let (ns, os) = (selector_of(spec_of(new)), selector_of(spec_of(old)));
    if !selectors_equal(ns, os) {
        errs.push(invalid_raw(
            path,
            gofmt::label_selector(ns),
            "field is immutable",
        ));
    }
}

/// Semantic equality of selectors: empty and absent lists are the same.
fn selectors_equal(a: Option<&Value>, b: Option<&Value>) -> bool {
    type Normalized<'a> = Option<(Vec<(&'a str, &'a str)>, Vec<&'a Value>)>;
    fn norm(v: Option<&Value>) -> Normalized<'_> {
        v.map(|s| {
            (
                super::json::str_map(s, "matchLabels"),
                arr(s, "matchExpressions").iter().collect(),
            )
        })
    }
    norm(a) == norm(b)
}

/// Go's `%#v` of an `intstr.IntOrString` held in JSON as a number or a string.
fn go_int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            gofmt::quote(s)
        ),
        Some(n) => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            n.as_i64().unwrap_or(0)
        ),
        None => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_owned(),
    }
}

/// `getIntOrPercentValue`: the number, or the percentage, or (as Go's `IntValue`) 0.
fn int_or_percent(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.strip_suffix('%').unwrap_or(s).parse().unwrap_or(0),
        Some(n) => n.as_i64().unwrap_or(0),
        None => 0,
    }
}

fn validate_positive_int_or_percent(errs: &mut Vec<FieldError>, v: Option<&Value>, path: &str) {
    match v {
        Some(Value::String(s)) => {
            for msg in is_percent(s) {
                errs.push(invalid_raw(path, go_int_or_string(v), msg));
            }
        }
        Some(n) => nonnegative(errs, path, n.as_i64()),
        None => {}
    }
}

fn not_more_than_100_percent(errs: &mut Vec<FieldError>, v: Option<&Value>, path: &str) {
    if let Some(Value::String(s)) = v
        && is_percent(s).is_empty()
        && int_or_percent(v) > 100
    {
        errs.push(invalid_raw(
            path,
            go_int_or_string(v),
            "must not be greater than 100%",
        ));
    }
}

pub(crate) fn validate_deployment(errs: &mut Vec<FieldError>, d: &Value, old: Option<&Value>) {
    let spec = spec_of(d);
    nonnegative(errs, "spec.replicas", int(spec, "replicas"));
    match validate_required_selector(errs, spec, "deployment") {
        None => errs.push(invalid_raw(
            "spec.selector",
            gofmt::label_selector(selector_of(spec)),
            "invalid label selector",
        )),
        Some(sel) => {
            let template = template_of(spec);
            check_selector_matches(errs, &sel, template, "spec.template");
            validate_pod_template(errs, template, "spec.template");
            validate_always_restart_template(errs, template, "ReplicaSet");
        }
    }
    let strategy = spec.get("strategy").unwrap_or(&Value::Null);
    match str_of(strategy, "type") {
        "Recreate" => {
            if get(strategy, "rollingUpdate").is_some() {
                errs.push(forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match get(strategy, "rollingUpdate") {
            None => errs.push(required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let (mu, ms) = (get(ru, "maxUnavailable"), get(ru, "maxSurge"));
                let base = "spec.strategy.rollingUpdate";
                validate_positive_int_or_percent(errs, mu, &child(base, "maxUnavailable"));
                validate_positive_int_or_percent(errs, ms, &child(base, "maxSurge"));
                if int_or_percent(mu) == 0 && int_or_percent(ms) == 0 {
                    errs.push(invalid_raw(
                        child(base, "maxUnavailable"),
                        go_int_or_string(mu),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                not_more_than_100_percent(errs, mu, &child(base, "maxUnavailable"));
            }
        },
        other => errs.push(super::with_value_not_supported(
            "spec.strategy",
            format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                gofmt::quote(other)
            ),
            &["Recreate", "RollingUpdate"],
        )),
    }
    let min_ready = int(spec, "minReadySeconds");
    nonnegative(errs, "spec.minReadySeconds", min_ready);
    nonnegative(
        errs,
        "spec.revisionHistoryLimit",
        int(spec, "revisionHistoryLimit"),
    );
    if let Some(pds) = int(spec, "progressDeadlineSeconds") {
        nonnegative(errs, "spec.progressDeadlineSeconds", Some(pds));
        if pds <= min_ready.unwrap_or(0) {
            errs.push(invalid_num(
                "spec.progressDeadlineSeconds",
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
    validate_selector_immutable(errs, d, old, "spec.selector");
}

pub(crate) fn validate_replica_set(errs: &mut Vec<FieldError>, rs: &Value, old: Option<&Value>) {
    let spec = spec_of(rs);
    nonnegative(errs, "spec.replicas", int(spec, "replicas"));
    nonnegative(errs, "spec.minReadySeconds", int(spec, "minReadySeconds"));
    match validate_required_selector(errs, spec, "deployment") {
        None => errs.push(invalid_raw(
            "spec.selector",
            gofmt::label_selector(selector_of(spec)),
            "invalid label selector",
        )),
        Some(sel) => {
            let template = template_of(spec);
            check_selector_matches(errs, &sel, template, "spec.template");
            validate_pod_template(errs, template, "spec.template");
            validate_always_restart_template(errs, template, "ReplicaSet");
        }
    }
    validate_selector_immutable(errs, rs, old, "spec.selector");
}

pub(crate) fn validate_stateful_set(errs: &mut Vec<FieldError>, sts: &Value, old: Option<&Value>) {
    let spec = spec_of(sts);
    match str_of(spec, "podManagementPolicy") {
        "" => errs.push(required("spec.podManagementPolicy", "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(invalid_str(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    match str_of(strategy, "type") {
        "" => errs.push(required("spec.updateStrategy", "")),
        "OnDelete" => {
            if let Some(ru) = get(strategy, "rollingUpdate") {
                errs.push(invalid_raw(
                    "spec.updateStrategy.rollingUpdate",
                    ru.to_string(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = get(strategy, "rollingUpdate") {
                let base = "spec.updateStrategy.rollingUpdate";
                nonnegative(errs, &child(base, "partition"), int(ru, "partition"));
                if let Some(mu) = get(ru, "maxUnavailable") {
                    let p = child(base, "maxUnavailable");
                    validate_positive_int_or_percent(errs, Some(mu), &p);
                    if int_or_percent(Some(mu)) == 0 {
                        errs.push(invalid_raw(&p, go_int_or_string(Some(mu)), "cannot be 0"));
                    }
                    not_more_than_100_percent(errs, Some(mu), &p);
                }
            }
        }
        _ => errs.push(invalid_raw(
            "spec.updateStrategy",
            strategy.to_string(),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = get(spec, "persistentVolumeClaimRetentionPolicy") {
        for f in ["whenDeleted", "whenScaled"] {
            let v = str_of(policy, f);
            if !matches!(v, "Retain" | "Delete") {
                errs.push(not_supported(
                    child("spec.persistentVolumeClaimRetentionPolicy", f),
                    v,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    nonnegative(errs, "spec.replicas", int(spec, "replicas"));
    nonnegative(errs, "spec.minReadySeconds", int(spec, "minReadySeconds"));
    if let Some(ord) = get(spec, "ordinals") {
        nonnegative(errs, "spec.ordinals.start", int(ord, "start"));
    }
    match validate_required_selector(errs, spec, "statefulset") {
        None => errs.push(invalid_raw(
            "spec.selector",
            gofmt::label_selector(selector_of(spec)),
            "",
        )),
        Some(sel) => {
            let template = template_of(spec);
            check_selector_matches(errs, &sel, template, "spec.template");
            // Kubernetes checks only the template's labels and annotations for StatefulSets.
            let m = meta(template);
            validate_labels(errs, m, "labels", "spec.template.labels");
            super::meta::validate_annotations(errs, m, "spec.template.annotations");
        }
    }
    validate_always_restart_template(errs, template_of(spec), "StatefulSet");
    if let Some(old) = old {
        let strip = |v: &Value| {
            let mut s = spec_of(v).clone();
            if let Some(m) = s.as_object_mut() {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(f);
                }
            }
            s
        };
        if strip(sts) != strip(old) {
            errs.push(forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

pub(crate) fn validate_daemon_set(errs: &mut Vec<FieldError>, ds: &Value, old: Option<&Value>) {
    let spec = spec_of(ds);
    let sel = selector_of(spec);
    validate_label_selector(errs, sel, "spec.selector");
    let template = template_of(spec);
    if let Ok(parsed) = Selector::parse(sel) {
        let matches = parsed
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.matches(meta(template), "labels"));
        if !matches {
            errs.push(invalid_raw(
                "spec.template.metadata.labels",
                gofmt::string_map(meta(template), "labels"),
                "`selector` does not match template `labels`",
            ));
        }
    }
    if let Some(s) = sel
        && arr(s, "matchExpressions").is_empty()
        && super::json::obj(s, "matchLabels").is_none_or(|m| m.is_empty())
    {
        errs.push(invalid_raw(
            "spec.selector",
            gofmt::label_selector(Some(s)),
            "empty selector is invalid for daemonset",
        ));
    }
    validate_pod_template(errs, template, "spec.template");
    validate_always_restart_template(errs, template, "DaemonSet");
    nonnegative(errs, "spec.minReadySeconds", int(spec, "minReadySeconds"));
    nonnegative(
        errs,
        "spec.templateGeneration",
        int(spec, "templateGeneration"),
    );
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    match str_of(strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match get(strategy, "rollingUpdate") {
            None => errs.push(required("spec.updateStrategy.rollingUpdate", "")),
            Some(ru) => {
                let base = "spec.updateStrategy.rollingUpdate";
                let (mu, ms) = (get(ru, "maxUnavailable"), get(ru, "maxSurge"));
                validate_positive_int_or_percent(errs, mu, &child(base, "maxUnavailable"));
                validate_positive_int_or_percent(errs, ms, &child(base, "maxSurge"));
                not_more_than_100_percent(errs, mu, &child(base, "maxUnavailable"));
                not_more_than_100_percent(errs, ms, &child(base, "maxSurge"));
                let (has_u, has_s) = (int_or_percent(mu) != 0, int_or_percent(ms) != 0);
                if has_u && has_s {
                    errs.push(invalid_raw(
                        child(base, "maxSurge"),
                        go_int_or_string(ms),
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !has_u && !has_s {
                    errs.push(required(child(base, "maxUnavailable"), "cannot be 0 when maxSurge is 0"));
                }
            }
        },
        other => errs.push(super::with_value_not_supported(
            "spec.updateStrategy",
            format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                gofmt::quote(other)
            ),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    nonnegative(
        errs,
        "spec.revisionHistoryLimit",
        int(spec, "revisionHistoryLimit"),
    );
    validate_selector_immutable(errs, ds, old, "spec.selector");
}

/// `validateJobSpec` of the spec at `path` (`spec` for Jobs, `spec.jobTemplate.spec` for
/// CronJobs): everything but the selector.
fn validate_job_spec(errs: &mut Vec<FieldError>, spec: &Value, path: &str) {
    let p = |f: &str| child(path, f);
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        nonnegative(errs, &p(f), int(spec, f));
    }
    if get(spec, "maxFailedIndexes").is_some() && get(spec, "backoffLimitPerIndex").is_none() {
        errs.push(required(
            p("backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        ));
    }
    let mode = opt_str(spec, "completionMode");
    if let Some(m) = mode {
        if !matches!(m, "NonIndexed" | "Indexed") {
            errs.push(not_supported(
                p("completionMode"),
                m,
                &["NonIndexed", "Indexed"],
            ));
        }
        if m == "Indexed" {
            if get(spec, "completions").is_none() {
                errs.push(required(
                    p("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(par) = int(spec, "parallelism").filter(|p| *p > 100_000) {
                errs.push(invalid_num(
                    p("parallelism"),
                    par,
                    "must be less than or equal to 100000 when completion mode is Indexed",
                ));
            }
        }
    }
    if mode.is_none_or(|m| m == "NonIndexed") {
        for f in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if let Some(v) = int(spec, f) {
                errs.push(invalid_num(p(f), v, "requires indexed completion mode"));
            }
        }
    }
    if let Some(prp) = opt_str(spec, "podReplacementPolicy") {
        if get(spec, "podFailurePolicy").is_some() {
            if prp != "Failed" {
                errs.push(not_supported(p("podReplacementPolicy"), prp, &["Failed"]));
            }
        } else if !matches!(prp, "Failed" | "TerminatingOrFailed") {
            errs.push(not_supported(
                p("podReplacementPolicy"),
                prp,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let template = template_of(spec);
    validate_pod_template(errs, template, &p("template"));
    let policy = str_of(spec_of(template), "restartPolicy");
    let rp = child(&p("template"), "spec.restartPolicy");
    if policy == "Always" || policy.is_empty() {
        errs.push(required(&rp, "valid values: \"OnFailure\", \"Never\""));
    } else if !matches!(policy, "OnFailure" | "Never") {
        errs.push(not_supported(&rp, policy, &["OnFailure", "Never"]));
    } else if get(spec, "podFailurePolicy").is_some() && policy != "Never" {
        errs.push(invalid_str(
            &rp,
            policy,
            "only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
}

const LEGACY_UID_LABEL: &str = "controller-uid";
const LEGACY_NAME_LABEL: &str = "job-name";
pub(crate) const UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub(crate) const NAME_LABEL: &str = "batch.kubernetes.io/job-name";

pub(crate) fn validate_job(errs: &mut Vec<FieldError>, job: &Value, old: Option<&Value>) {
    let spec = spec_of(job);
    let m = meta(job);
    let name = str_of(m, "name");
    let mut uid = str_of(m, "uid");
    if uid.is_empty() {
        uid = old.map_or("", |o| str_of(meta(o), "uid"));
    }
    let template = template_of(spec);
    let tmeta = meta(template);
    let selector = selector_of(spec);
    // validateGeneratedSelector
    if boolean(spec, "manualSelector") != Some(true) && selector.is_some() {
        if uid.is_empty() {
            errs.push(required("metadata.uid", ""));
        }
        let require_prefixed = match old {
            None => true,
            Some(o) => {
                let ol = meta(template_of(spec_of(o)));
                super::json::obj(ol, "labels")
                    .is_some_and(|l| l.contains_key(UID_LABEL) && l.contains_key(NAME_LABEL))
            }
        };
        let mut expected = vec![(LEGACY_UID_LABEL, uid), (LEGACY_NAME_LABEL, name)];
        if require_prefixed {
            expected.push((UID_LABEL, uid));
            expected.push((NAME_LABEL, name));
        }
        for (label, want) in [
            (LEGACY_UID_LABEL, uid),
            (LEGACY_NAME_LABEL, name),
            (UID_LABEL, uid),
            (NAME_LABEL, name),
        ] {
            if !require_prefixed && (label == UID_LABEL || label == NAME_LABEL) {
                continue;
            }
            let path = super::json::key("spec.template.metadata.labels", label);
            match super::json::obj(tmeta, "labels")
                .and_then(|l| l.get(label))
                .and_then(Value::as_str)
            {
                None => errs.push(required(path, &format!("must be '{want}'"))),
                Some(v) if v != want => errs.push(invalid_raw(
                    path,
                    gofmt::string_map(tmeta, "labels"),
                    format!("must be '{want}'"),
                )),
                Some(_) => {}
            }
        }
        if let Ok(Some(sel)) = Selector::parse(selector) {
            let labels: serde_json::Map<String, Value> = expected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
                .collect();
            let holder = serde_json::json!({ "labels": labels });
            if !sel.matches(&holder, "labels") {
                errs.push(invalid_raw(
                    "spec.selector",
                    gofmt::label_selector(selector),
                    "`selector` not auto-generated",
                ));
            }
        }
    }
    validate_job_spec(errs, spec, "spec");
    match selector {
        None => errs.push(required("spec.selector", "")),
        Some(s) => validate_label_selector(errs, Some(s), "spec.selector"),
    }
    if let Ok(sel) = Selector::parse(selector) {
        check_selector_matches(errs, &sel, template, "spec.template");
    }
    if opt_str(spec, "completionMode") == Some("Indexed")
        && let Some(c) = int(spec, "completions").filter(|c| *c > 0)
    {
        let host = format!("{name}-{}", c - 1);
        if !is_dns1123_label(&host).is_empty() {
            errs.push(invalid_str(
                "metadata.name",
                name,
                format!("will not able to create pod with invalid DNS label: {host}"),
            ));
        }
    }
    if let Some(old) = old {
        validate_job_update(errs, spec, spec_of(old), old);
    }
}

fn validate_job_update(errs: &mut Vec<FieldError>, spec: &Value, old_spec: &Value, old: &Value) {
    let indexed = opt_str(spec, "completionMode") == Some("Indexed");
    if spec.get("completions") != old_spec.get("completions") {
        if !indexed {
            errs.push(immutable_json("spec.completions", spec.get("completions")));
        } else if int(spec, "completions").is_some()
            && int(spec, "completions") != int(spec, "parallelism")
        {
            errs.push(invalid_raw(
                "spec.completions",
                render_json(spec.get("completions")),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    }
    if !selectors_equal(selector_of(spec), selector_of(old_spec)) {
        errs.push(invalid_raw(
            "spec.selector",
            gofmt::label_selector(selector_of(spec)),
            "field is immutable",
        ));
    }
    let mut new_t = template_of(spec).clone();
    let mut old_t = template_of(old_spec).clone();
    let suspended = boolean(old_spec, "suspend") == Some(true);
    let started = old
        .get("status")
        .and_then(|s| get(s, "startTime"))
        .is_some();
    if suspended && !started {
        // Scheduling directives of a suspended Job that never started may change.
        for t in [&mut new_t, &mut old_t] {
            if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("labels");
                m.remove("annotations");
            }
            if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
                for f in ["nodeSelector", "tolerations", "schedulingGates"] {
                    s.remove(f);
                }
                if let Some(a) = s.get_mut("affinity").and_then(Value::as_object_mut) {
                    a.remove("nodeAffinity");
                    if a.is_empty() {
                        s.remove("affinity");
                    }
                }
            }
        }
    }
    if new_t != old_t {
        errs.push(immutable_json("spec.template", spec.get("template")));
    }
    for f in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        if spec.get(f) != old_spec.get(f) {
            errs.push(immutable_json(&child("spec", f), spec.get(f)));
        }
    }
}

fn render_json(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".to_owned(),
        Some(Value::String(s)) => gofmt::quote(s),
        Some(other) => other.to_string(),
    }
}

fn immutable_json(path: &str, v: Option<&Value>) -> FieldError {
    invalid_raw(path, render_json(v), "field is immutable")
}

pub(crate) fn validate_cron_job(errs: &mut Vec<FieldError>, cj: &Value, old: Option<&Value>) {
    let spec = spec_of(cj);
    let schedule = str_of(spec, "schedule");
    if schedule.is_empty() {
        errs.push(required("spec.schedule", ""));
    } else {
        if let Err(e) = parse_standard(schedule) {
            errs.push(invalid_str("spec.schedule", schedule, e));
        }
        let allow_tz = old.is_some_and(|o| str_of(spec_of(o), "schedule").contains("TZ"));
        if schedule.contains("TZ") {
            if !allow_tz {
                errs.push(invalid_str(
                    "spec.schedule",
                    schedule,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if get(spec, "timeZone").is_some() {
                errs.push(invalid_str(
                    "spec.schedule",
                    schedule,
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ));
            }
        }
    }
    nonnegative(
        errs,
        "spec.startingDeadlineSeconds",
        int(spec, "startingDeadlineSeconds"),
    );
    if let Some(tz) = opt_str(spec, "timeZone") {
        let changed = old.is_none_or(|o| opt_str(spec_of(o), "timeZone") != Some(tz));
        if changed {
            validate_time_zone(errs, tz);
        }
    }
    match str_of(spec, "concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(required("spec.concurrencyPolicy", "")),
        other => errs.push(not_supported(
            "spec.concurrencyPolicy",
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let job_spec = spec
        .get("jobTemplate")
        .and_then(|t| t.get("spec"))
        .unwrap_or(&Value::Null);
    validate_job_spec(errs, job_spec, "spec.jobTemplate.spec");
    if let Some(sel) = get(job_spec, "selector") {
        errs.push(invalid_raw(
            "spec.jobTemplate.spec.selector",
            gofmt::label_selector(Some(sel)),
            "`selector` will be auto-generated",
        ));
    }
    if boolean(job_spec, "manualSelector") == Some(true) {
        errs.push(super::with_value_not_supported(
            "spec.jobTemplate.spec.manualSelector",
            "true".to_owned(),
            &["nil", "false"],
        ));
    }
    nonnegative(
        errs,
        "spec.successfulJobsHistoryLimit",
        int(spec, "successfulJobsHistoryLimit"),
    );
    nonnegative(
        errs,
        "spec.failedJobsHistoryLimit",
        int(spec, "failedJobsHistoryLimit"),
    );
    if old.is_none() {
        let name = str_of(meta(cj), "name");
        if name.len() > 52 {
            errs.push(invalid_str(
                "metadata.name",
                name,
                "must be no more than 52 characters",
            ));
        }
    }
}

fn validate_time_zone(errs: &mut Vec<FieldError>, tz: &str) {
    if tz.is_empty() {
        errs.push(invalid_str(
            "spec.timeZone",
            tz,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    for part in tz.split('/') {
        let ok = !part.is_empty()
            && part.len() <= 14
            && part != "."
            && part != ".."
            && !part.starts_with('-')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'));
        if !ok {
            errs.push(invalid_str(
                "spec.timeZone",
                tz,
                format!("unknown time zone {tz}"),
            ));
            return;
        }
    }
    if tz.eq_ignore_ascii_case("Local") {
        errs.push(invalid_str(
            "spec.timeZone",
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
}
