//! Pod predicates the workload controllers share (`pkg/api/v1/pod` and `pkg/controller`'s
//! `IsPodActive`, `IsPodAvailable`) and the order in which surplus pods are deleted
//! (`ActivePodsWithRanks`: cheapest to lose first).

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// Annotation that lowers or raises a pod's cost of deletion during scale-down.
pub(crate) const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A pod that counts towards replicas: not terminal and not being deleted.
pub(crate) fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// A pod from `template` (`GetPodFromTemplate`): the template's labels, annotations, finalizers and
/// spec, in `namespace`, with a controller reference to `owner`. The caller names it.
pub(crate) fn from_template<K: kube::Resource<DynamicType = ()>>(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    owner: &K,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            namespace: owner.meta().namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![super::owners::new_controller_ref(owner)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The pod's phase, if set.
pub(crate) fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Running with the Ready condition True (`isRunningAndReady`).
pub(crate) fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && is_ready(pod)
}

/// Being deleted.
pub(crate) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's Ready condition, if it has one.
pub(crate) fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` by `now`.
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(cond) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    cond.last_transition_time
        .as_ref()
        .is_some_and(|t| t.0.as_second() + i64::from(min_ready_seconds) < now.as_second())
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ready_time(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
        .unwrap_or(0)
}

/// floor(log2(age in nanoseconds)), or -1 for no age: Kubernetes' logarithmic scale-down buckets.
fn log_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let age = now.as_nanosecond() - t.as_nanosecond();
    if age > 0 {
        127 - i64::from(age.leading_zeros())
    } else {
        -1
    }
}

/// Compares two times where the *newer* sorts first and a missing time first of all; with
/// LogarithmicScaleDown (on since Kubernetes 1.22), times in the same power-of-two age bucket tie
/// and the pod UID breaks the tie.
fn newer_first(
    a: (Option<Timestamp>, &Pod),
    b: (Option<Timestamp>, &Pod),
    now: Timestamp,
) -> Ordering {
    match (a.0, b.0) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(ta), Some(tb)) if ta == tb => Ordering::Equal,
        (Some(ta), Some(tb)) => match log_bucket(ta, now).cmp(&log_bucket(tb, now)) {
            Ordering::Equal => a.1.metadata.uid.cmp(&b.1.metadata.uid),
            other => other,
        },
    }
}

/// A pod and its rank: how many of the related active pods share its node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) rank: usize,
}

/// Ranks `pods` by the number of `related` pods on the same node (unscheduled pods rank 0).
pub(crate) fn rank_by_node<'a>(pods: &[&'a Pod], related: &[&Pod]) -> Vec<Ranked<'a>> {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
    };
    let mut per_node = std::collections::HashMap::<String, usize>::new();
    for p in related {
        if let Some(n) = node(p) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    pods.iter()
        .map(|&pod| Ranked {
            pod,
            rank: node(pod)
                .and_then(|n| per_node.get(&n).copied())
                .unwrap_or(0),
        })
        .collect()
}

/// Kubernetes' deletion order (`ActivePodsWithRanks.Less`): the pod that sorts first is deleted first.
///
/// 1. unscheduled < scheduled
/// 2. Pending < Unknown < Running
/// 3. not ready < ready
/// 4. lower `controller.kubernetes.io/pod-deletion-cost` first
/// 5. higher rank (doubled up on a node) first
/// 6. ready more recently first (in power-of-two age buckets)
/// 7. more container restarts first
/// 8. created more recently first (in power-of-two age buckets)
pub(crate) fn deletion_order(a: &Ranked<'_>, b: &Ranked<'_>, now: Timestamp) -> Ordering {
    let (pa, pb) = (a.pod, b.pod);
    let assigned = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    assigned(pa)
        .cmp(&assigned(pb))
        .then_with(|| phase_ordinal(pa).cmp(&phase_ordinal(pb)))
        .then_with(|| is_ready(pa).cmp(&is_ready(pb)))
        .then_with(|| deletion_cost(pa).cmp(&deletion_cost(pb)))
        .then_with(|| b.rank.cmp(&a.rank))
        .then_with(|| {
            if is_ready(pa) && is_ready(pb) {
                newer_first((ready_time(pa), pa), (ready_time(pb), pb), now)
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| max_restarts(pb).cmp(&max_restarts(pa)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            newer_first((created(pa), pa), (created(pb), pb), now)
        })
}

/// The `count` pods to delete first.
pub(crate) fn pods_to_delete<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    count: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    let mut ranked = rank_by_node(pods, related);
    ranked.sort_by(|a, b| deletion_order(a, b, now));
    ranked.into_iter().take(count).map(|r| r.pod).collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    /// A pod described by a compact spec: name, node, phase, ready-since, created, restarts.
    fn pod(
        name: &str,
        node: &str,
        phase: &str,
        ready_since: Option<i64>,
        created: i64,
        restarts: i32,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_owned()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_since.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(ts(t))),
                        ..Default::default()
                    }]
                }),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn surplus_pods_are_deleted_cheapest_first() {
        let now = ts(1_000_000);
        let pods = [
            pod("ready-old", "n1", "Running", Some(1_000), 500, 0),
            pod("unscheduled", "", "Pending", None, 999_000, 0),
            pod("pending", "n2", "Pending", None, 999_000, 0),
            pod("running-not-ready", "n3", "Running", None, 999_000, 0),
            pod("ready-new", "n4", "Running", Some(999_990), 999_000, 0),
            pod("ready-restarts", "n5", "Running", Some(1_000), 600, 5),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let order: Vec<&str> = pods_to_delete(&refs, &refs, refs.len(), now)
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending",
                "running-not-ready",
                "ready-new",
                "ready-restarts",
                "ready-old"
            ]
        );
        assert_eq!(pods_to_delete(&refs, &refs, 2, now).len(), 2);
    }

    #[test]
    fn doubled_up_pods_and_deletion_cost_go_first() {
        let now = ts(1_000_000);
        let mut cheap = pod("cheap", "n3", "Running", Some(1_000), 500, 0);
        cheap.metadata.annotations =
            Some([(POD_DELETION_COST.to_owned(), "-10".to_owned())].into());
        let pods = [
            pod("alone", "n1", "Running", Some(1_000), 500, 0),
            pod("crowded-a", "n2", "Running", Some(1_000), 500, 0),
            pod("crowded-b", "n2", "Running", Some(1_000), 500, 0),
            cheap,
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let order: Vec<&str> = pods_to_delete(&refs, &refs, 4, now)
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        assert_eq!(order[0], "cheap");
        assert!(
            order[1].starts_with("crowded") && order[2].starts_with("crowded"),
            "{order:?}"
        );
        assert_eq!(order[3], "alone");
    }

    #[test]
    fn availability_honours_min_ready_seconds() {
        let p = pod("p", "n1", "Running", Some(100), 0, 0);
        assert!(is_available(&p, 0, ts(100)));
        assert!(is_available(&p, 10, ts(111)));
        assert!(!is_available(&p, 10, ts(110)));
        let not_ready = pod("q", "n1", "Running", None, 0, 0);
        assert!(!is_available(&not_ready, 0, ts(100)));
        assert!(!is_ready(&not_ready));
    }

    #[test]
    fn terminal_and_deleting_pods_are_inactive() {
        assert!(is_active(&pod("p", "", "Pending", None, 0, 0)));
        assert!(!is_active(&pod("p", "", "Succeeded", None, 0, 0)));
        assert!(!is_active(&pod("p", "", "Failed", None, 0, 0)));
        let mut deleting = pod("p", "", "Running", None, 0, 0);
        deleting.metadata.deletion_timestamp = Some(Time(ts(1)));
        assert!(!is_active(&deleting));
    }
}
