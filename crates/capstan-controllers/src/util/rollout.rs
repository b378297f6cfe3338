//! Deployment arithmetic without IO (Kubernetes' `pkg/controller/deployment/util`): the pod-template
//! hash, maxSurge/maxUnavailable resolution, how far the new ReplicaSet may grow, proportional
//! scaling fractions, revision annotations, template equality ignoring the hash label, and the
//! Deployment condition helpers.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label that ties a ReplicaSet and its pods to one pod template.
pub(crate) const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// A ReplicaSet's (and its Deployment's) revision.
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had before it was rolled back to.
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when it last scaled this ReplicaSet.
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge when the Deployment last scaled this ReplicaSet.
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Longest `revision-history` annotation kept (`--deployment-controller` default).
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Deployment condition reasons (`deploymentutil`), so a Kubernetes person recognises them.
pub(crate) mod reason {
    pub(crate) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    pub(crate) const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    pub(crate) const RS_UPDATED: &str = "ReplicaSetUpdated";
    pub(crate) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    pub(crate) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    pub(crate) const PAUSED: &str = "DeploymentPaused";
    pub(crate) const RESUMED: &str = "DeploymentResumed";
    pub(crate) const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    pub(crate) const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
    pub(crate) const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
}

/// FNV-1a, 32 bits.
pub(crate) fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Kubernetes' `rand.SafeEncodeString`: each byte mapped into an alphabet without vowels or
/// look-alike characters, so the result never spells words.
pub(crate) fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// The `pod-template-hash` of a template: FNV-32a over its JSON (plus the collision count, as little
/// endian bytes, once a hash collided), in decimal, safe-encoded. Stable across processes: the JSON of
/// k8s-openapi types has a fixed field order and sorted maps.
pub(crate) fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// A template without the `pod-template-hash` label, and with empty maps normalised away.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH);
        }
        if meta.labels.as_ref().is_some_and(BTreeMap::is_empty) {
            meta.labels = None;
        }
        if meta.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
            meta.annotations = None;
        }
    }
    if let Some(meta) = t.metadata.as_mut()
        && meta.generation == Some(0)
    {
        meta.generation = None;
    }
    if t.metadata
        .as_ref()
        .is_some_and(|m| *m == Default::default())
    {
        t.metadata = None;
    }
    // Go's non-pointer fields: `false`/`0` and absent are the same value (kube compares typed
    // structs), but a client may write them out (protobuf bodies do) and another may omit them.
    let no_false = |v: &mut Option<bool>| {
        if *v == Some(false) {
            *v = None;
        }
    };
    if let Some(spec) = t.spec.as_mut() {
        no_false(&mut spec.host_ipc);
        no_false(&mut spec.host_network);
        no_false(&mut spec.host_pid);
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            no_false(&mut c.stdin);
            no_false(&mut c.stdin_once);
            no_false(&mut c.tty);
        }
    }
    t
}

/// Template equality ignoring `pod-template-hash` (`EqualIgnoreHash`): how a Deployment finds the
/// ReplicaSet of its current template, including an old one after `kubectl rollout undo`.
pub(crate) fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// `GetScaledValueFromIntOrPercent`: an int as is, `"N%"` of `total` rounded up or down.
pub(crate) fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(v) => Ok(*v),
        IntOrString::String(s) => {
            let Some(percent) = s.strip_suffix('%') else {
                return Err(format!(
                    "invalid value for IntOrString: {s:?} is not a percentage"
                ));
            };
            let percent: i64 = percent
                .parse()
                .map_err(|_| format!("invalid value {s:?}"))?;
            let scaled = percent * i64::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(v).map_err(|_| format!("value {s:?} of {total} overflows"))
        }
    }
}

/// `ResolveFenceposts`: maxSurge rounds up, maxUnavailable rounds down, and if both come to zero
/// maxUnavailable becomes 1 so that a rollout can make progress.
pub(crate) fn resolve_fenceposts(
    surge: &IntOrString,
    unavailable: &IntOrString,
    desired: i32,
) -> (i32, i32) {
    let surge = scaled_value(surge, desired, true).unwrap_or(0);
    let unavailable = scaled_value(unavailable, desired, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// `spec.replicas`, defaulting to 1.
pub(crate) fn deployment_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Whether the Deployment uses the RollingUpdate strategy (the default).
pub(crate) fn is_rolling_update(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

fn rolling_params(d: &Deployment) -> (IntOrString, IntOrString) {
    let default = || IntOrString::String("25%".into());
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    (
        ru.and_then(|r| r.max_surge.clone()).unwrap_or_else(default),
        ru.and_then(|r| r.max_unavailable.clone())
            .unwrap_or_else(default),
    )
}

/// Resolved maxSurge (0 unless RollingUpdate).
pub(crate) fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    let (surge, unavailable) = rolling_params(d);
    resolve_fenceposts(&surge, &unavailable, deployment_replicas(d)).0
}

/// Resolved maxUnavailable, at most `spec.replicas` (0 unless RollingUpdate with replicas).
pub(crate) fn max_unavailable(d: &Deployment) -> i32 {
    let replicas = deployment_replicas(d);
    if !is_rolling_update(d) || replicas == 0 {
        return 0;
    }
    let (surge, unavailable) = rolling_params(d);
    resolve_fenceposts(&surge, &unavailable, replicas)
        .1
        .min(replicas)
}

/// `spec.replicas` of a ReplicaSet (defaulted to 1 by the API server).
pub(crate) fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(crate) fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

pub(crate) fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub(crate) fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key)?.parse().ok()
}

/// A ReplicaSet's revision (0 when missing or malformed).
pub(crate) fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The highest revision among `rss`.
pub(crate) fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter().map(revision).max().unwrap_or(0)
}

/// A ReplicaSet with replicas.
pub(crate) fn is_active(rs: &ReplicaSet) -> bool {
    rs_replicas(rs) > 0
}

/// Oldest first, then by name (`ReplicaSetsByCreationTimestamp`).
pub(crate) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    t(a).cmp(&t(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Largest first; among equals the newer first (scaling up) or older first (scaling down).
pub(crate) fn by_size(a: &ReplicaSet, b: &ReplicaSet, newer_first: bool) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| {
        if newer_first {
            by_creation(b, a)
        } else {
            by_creation(a, b)
        }
    })
}

/// Lowest revision first, then oldest (`ReplicaSetsByRevision`).
pub(crate) fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a)
        .cmp(&revision(b))
        .then_with(|| by_creation(a, b))
}

/// The oldest ReplicaSet whose template equals the Deployment's (`FindNewReplicaSet`).
pub(crate) fn find_new_replica_set<'a>(
    d: &Deployment,
    rss: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let template = d.spec.as_ref()?.template.clone();
    let mut sorted: Vec<&ReplicaSet> = rss.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted.into_iter().find(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, &template))
    })
}

/// How many replicas the new ReplicaSet should have now (`NewRSNewReplicas`): for RollingUpdate as
/// many as maxSurge allows without exceeding `spec.replicas`; for Recreate all of them.
pub(crate) fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    let replicas = deployment_replicas(d);
    if !is_rolling_update(d) {
        return replicas;
    }
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = replicas + max_surge(d);
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let scale_up = (max_total - current).min(replicas - rs_replicas(new_rs));
    rs_replicas(new_rs) + scale_up
}

/// Whether the new ReplicaSet has all replicas, all available, at the current size (`IsSaturated`).
pub(crate) fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let replicas = deployment_replicas(d);
    int_annotation(rs, DESIRED_REPLICAS) == Some(replicas)
        && rs_replicas(rs) == replicas
        && rs_available(rs) == replicas
}

/// The desired-replicas annotation differs from `spec.replicas` on some active ReplicaSet: the
/// user scaled the Deployment (`isScalingEvent`).
pub(crate) fn is_scaling_event<'a>(
    d: &Deployment,
    rss: impl IntoIterator<Item = &'a ReplicaSet>,
) -> bool {
    let replicas = deployment_replicas(d);
    rss.into_iter()
        .filter(|rs| is_active(rs))
        .filter_map(|rs| int_annotation(rs, DESIRED_REPLICAS))
        .any(|desired| desired != replicas)
}

/// How many replicas `rs` gains (or loses) in a proportional scale (`GetProportion`).
pub(crate) fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// `getReplicaSetFraction`: the change that keeps `rs` at its share of the Deployment's new size.
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let replicas = deployment_replicas(d);
    if replicas == 0 {
        return -rs_replicas(rs);
    }
    let deployment_size = f64::from(replicas + max_surge(d));
    let annotated = int_annotation(rs, MAX_REPLICAS)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let new_size = (f64::from(rs_replicas(rs)) * deployment_size / f64::from(annotated)).round();
    // Bounded by replica counts, which are i32.
    #[allow(clippy::cast_possible_truncation)]
    let new_size = new_size as i32;
    new_size - rs_replicas(rs)
}

/// Sets the desired/max replicas annotations; returns whether they changed.
pub(crate) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

/// Whether the replicas annotations need an update.
pub(crate) fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    int_annotation(rs, DESIRED_REPLICAS) != Some(desired)
        || int_annotation(rs, MAX_REPLICAS) != Some(max)
}

/// Deployment annotations that are not copied to its ReplicaSets.
fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION
            | REVISION_HISTORY
            | DESIRED_REPLICAS
            | MAX_REPLICAS
    ) || key.starts_with("non-convertible.kubernetes.io")
}

/// `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises the revision to
/// `new_revision` (recording the previous one in `revision-history` when an old ReplicaSet is
/// reused), and for a ReplicaSet about to be created sets the replicas annotations. Returns whether
/// anything changed.
pub(crate) fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = annotations.get(REVISION).cloned();
    let old_revision = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(r)) => r,
        Some(Err(_)) => return changed,
    };
    if old_revision < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            revisions.push(&old);
            while revisions.join(",").len() > MAX_REVISION_HISTORY_CHARS && revisions.len() > 1 {
                revisions.remove(0);
            }
            let joined = revisions.join(",");
            annotations.insert(REVISION_HISTORY.into(), joined);
        }
    }
    if !exists {
        let replicas = deployment_replicas(d);
        changed |= set_replicas_annotations(rs, replicas, replicas + max_surge(d));
    }
    changed
}

/// The condition of `type_`, if present.
pub(crate) fn condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// A condition stamped now.
pub(crate) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    let now = super::now();
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// `SetDeploymentCondition`: no change when status and reason are the same; the transition time is
/// kept while the status is unchanged.
pub(crate) fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

pub(crate) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// `progressDeadlineSeconds` is set (and not "forever").
pub(crate) fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|s| s != i32::MAX)
}

/// The rollout is done (`DeploymentComplete`): every replica updated and available, none old,
/// and the latest spec observed.
pub(crate) fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = deployment_replicas(d);
    status.updated_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
        && status.observed_generation >= d.metadata.generation
}

/// The new status shows progress over the old (`DeploymentProgressing`).
pub(crate) fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    n(new.updated_replicas) > n(old.updated_replicas)
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(old.replicas) - n(old.updated_replicas) > n(new.replicas) - n(new.updated_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn ios(s: &str) -> IntOrString {
        s.parse::<i32>()
            .map_or_else(|_| IntOrString::String(s.into()), IntOrString::Int)
    }

    fn deployment(replicas: i32, surge: &str, unavailable: &str) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(ios(surge)),
                        max_unavailable: Some(ios(unavailable)),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rs(name: &str, replicas: i32, annotations: &[(&str, &str)]) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn template(image: &str, hash: Option<&str>) -> PodTemplateSpec {
        let mut labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        if let Some(h) = hash {
            labels.insert(POD_TEMPLATE_HASH.into(), h.into());
        }
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn fnv32a_matches_reference_vectors() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn hash_is_stable_safe_encoded_and_template_sensitive() {
        let a = compute_hash(&template("nginx:1.25", None), None);
        assert_eq!(a, compute_hash(&template("nginx:1.25", None), None));
        assert!(
            a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{a}"
        );
        assert!((1..=10).contains(&a.len()));
        assert_ne!(a, compute_hash(&template("nginx:1.26", None), None));
        assert_ne!(a, compute_hash(&template("nginx:1.25", None), Some(1)));
        // b"0123" = 48..51; modulo 27 = 21..24 -> "4567".
        assert_eq!(safe_encode("0123"), "4567");
    }

    #[test]
    fn template_equality_ignores_the_hash_label() {
        assert!(equal_ignore_hash(
            &template("a", Some("xyz")),
            &template("a", None)
        ));
        assert!(!equal_ignore_hash(
            &template("a", Some("xyz")),
            &template("b", Some("xyz"))
        ));
        // Go zero values written out equal absent ones.
        let mut explicit = template("a", Some("xyz"));
        if let Some(meta) = explicit.metadata.as_mut() {
            meta.generation = Some(0);
        }
        if let Some(spec) = explicit.spec.as_mut() {
            spec.host_network = Some(false);
            spec.containers[0].stdin = Some(false);
            spec.containers[0].tty = Some(false);
        }
        assert!(equal_ignore_hash(&explicit, &template("a", None)));
        if let Some(spec) = explicit.spec.as_mut() {
            spec.containers[0].tty = Some(true);
        }
        assert!(!equal_ignore_hash(&explicit, &template("a", None)));
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        // (maxSurge, maxUnavailable, replicas) -> (surge, unavailable)
        let cases = [
            ("25%", "25%", 10, (3, 2)),
            ("25%", "25%", 4, (1, 1)),
            ("25%", "25%", 3, (1, 0)),
            ("25%", "25%", 1, (1, 0)),
            ("0", "0", 5, (0, 1)),
            ("0%", "0%", 3, (0, 1)),
            ("2", "50%", 5, (2, 2)),
            ("30%", "30%", 4, (2, 1)),
            ("100%", "0", 3, (3, 0)),
        ];
        for (surge, unavailable, replicas, want) in cases {
            assert_eq!(
                resolve_fenceposts(&ios(surge), &ios(unavailable), replicas),
                want,
                "{surge} {unavailable} {replicas}"
            );
        }
        assert!(scaled_value(&IntOrString::String("5".into()), 10, true).is_err());
        // maxUnavailable never exceeds replicas; Recreate has neither.
        assert_eq!(max_unavailable(&deployment(2, "0", "5")), 2);
        let mut recreate = deployment(3, "1", "1");
        if let Some(s) = recreate.spec.as_mut() {
            s.strategy = Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            });
        }
        assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        let d = deployment(10, "3", "2");
        let old = rs("old", 10, &[]);
        let new = rs("new", 0, &[]);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 3);
        let old = rs("old", 8, &[]);
        let new = rs("new", 3, &[]);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 5);
        let old = rs("old", 2, &[]);
        let new = rs("new", 9, &[]);
        assert_eq!(
            new_rs_new_replicas(&d, &[&old, &new], &new),
            10,
            "never above spec.replicas"
        );
    }

    #[test]
    fn proportional_scaling_keeps_shares() {
        // A deployment of 10 (+3 surge) split 8/5 is scaled to 20 (+5 surge = 25): 12 to add.
        let d = deployment(20, "25%", "25%");
        let a = rs("a", 8, &[(MAX_REPLICAS, "13")]);
        let b = rs("b", 5, &[(MAX_REPLICAS, "13")]);
        let to_add = 25 - 13;
        let pa = proportion(&a, &d, to_add, 0);
        let pb = proportion(&b, &d, to_add, pa);
        assert_eq!((pa, pb), (7, 5));
        // Scaling to zero removes everything.
        let zero = deployment(0, "25%", "25%");
        assert_eq!(proportion(&a, &zero, -13, 0), -8);
    }

    #[test]
    fn revision_annotations_and_history() {
        let d = Deployment {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([
                    ("team".to_owned(), "blue".to_owned()),
                    (REVISION.to_owned(), "7".to_owned()),
                ])),
                ..Default::default()
            },
            ..deployment(3, "1", "0")
        };
        let mut fresh = rs("fresh", 0, &[]);
        assert!(set_new_replica_set_annotations(&d, &mut fresh, 1, false));
        let ann = fresh.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(REVISION).map(String::as_str), Some("1"));
        assert_eq!(ann.get("team").map(String::as_str), Some("blue"));
        assert_eq!(ann.get(DESIRED_REPLICAS).map(String::as_str), Some("3"));
        assert_eq!(ann.get(MAX_REPLICAS).map(String::as_str), Some("4"));
        assert!(
            !set_new_replica_set_annotations(&d, &mut fresh, 1, true),
            "idempotent"
        );

        let mut reused = rs("reused", 0, &[(REVISION, "1")]);
        assert!(set_new_replica_set_annotations(&d, &mut reused, 3, true));
        let ann = reused.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(ann.get(REVISION_HISTORY).map(String::as_str), Some("1"));
        assert!(set_new_replica_set_annotations(&d, &mut reused, 5, true));
        let ann = reused.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(REVISION_HISTORY).map(String::as_str), Some("1,3"));
    }

    #[test]
    fn conditions_keep_transition_time_while_status_holds() {
        let mut status = DeploymentStatus::default();
        let mut first = new_condition("Progressing", "True", reason::NEW_RS_CREATED, "a".into());
        first.last_transition_time = None;
        set_condition(&mut status, first);
        set_condition(
            &mut status,
            new_condition("Progressing", "True", reason::NEW_RS_AVAILABLE, "b".into()),
        );
        let cond = condition(&status, "Progressing").expect("condition");
        assert_eq!(cond.reason.as_deref(), Some(reason::NEW_RS_AVAILABLE));
        assert_eq!(
            cond.last_transition_time, None,
            "transition time kept from the True condition"
        );
        let before = status.clone();
        set_condition(
            &mut status,
            new_condition("Progressing", "True", reason::NEW_RS_AVAILABLE, "c".into()),
        );
        assert_eq!(status, before, "same status and reason: no change");
        remove_condition(&mut status, "Progressing");
        assert!(status.conditions.is_none());
    }
}
