//! The plugin contract, after kube-scheduler's framework: a [`Filter`] says whether a pod fits a
//! node (returning a [`Status`] with kube's reason strings), a [`Score`] ranks the nodes that fit
//! (0..=[`MAX_NODE_SCORE`], optionally normalised across nodes). Plugins never mutate the cache.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Debug;

use crate::cache::{Cache, NodeInfo};
use crate::plugins::inter_pod_affinity::InterPodAffinityState;
use crate::plugins::volume_binding::VolumeBindingState;
use crate::types::PodInfo;

/// Highest score a plugin gives a node (kube: `framework.MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// A reason a node was rejected, as shown in `FailedScheduling` events.
pub type Reason = Cow<'static, str>;

/// Outcome of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Success,
    /// The node does not fit now; it might after cluster changes (preemption could help).
    Unschedulable(Vec<Reason>),
    /// The node cannot fit this pod whatever happens to other pods.
    UnschedulableAndUnresolvable(Vec<Reason>),
}

impl Status {
    pub fn unschedulable(reason: impl Into<Reason>) -> Self {
        Status::Unschedulable(vec![reason.into()])
    }

    pub fn unresolvable(reason: impl Into<Reason>) -> Self {
        Status::UnschedulableAndUnresolvable(vec![reason.into()])
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Status::Success)
    }

    pub fn reasons(&self) -> &[Reason] {
        match self {
            Status::Success => &[],
            Status::Unschedulable(r) | Status::UnschedulableAndUnresolvable(r) => r,
        }
    }
}

/// Data computed once per scheduling cycle by `pre_filter` and read by the filters and scores.
#[derive(Debug, Default)]
pub struct CycleState {
    pub inter_pod_affinity: Option<InterPodAffinityState>,
    pub volume_binding: Option<VolumeBindingState>,
}

/// Decides whether a pod fits a node.
pub trait Filter: Send + Sync + Debug {
    /// The upstream plugin name.
    fn name(&self) -> &'static str;

    /// Computes per-cycle data once before the nodes are filtered.
    fn pre_filter(&self, _pod: &PodInfo, _cache: &Cache, _state: &mut CycleState) {}

    /// True when this filter passes every node for `pod` (after `pre_filter`), so the cycle need
    /// not call it per node (kube: a PreFilter returning `Skip`). Must not change any decision.
    fn skip(&self, _state: &CycleState, _pod: &PodInfo) -> bool {
        false
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Ranks the nodes a pod fits.
pub trait Score: Send + Sync + Debug {
    /// The upstream plugin name.
    fn name(&self) -> &'static str;

    /// Raw score of one node; [`Score::normalize`] brings the raw scores to 0..=MAX_NODE_SCORE.
    /// True when this score would rank every node alike for `pod`, so the cycle need not compute
    /// it (kube: a PreScore returning `Skip`). A constant added to all totals changes no decision.
    fn skip(&self, _state: &CycleState, _pod: &PodInfo) -> bool {
        false
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;

    /// Adjusts the raw scores of all feasible nodes (default: already in range).
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Scales scores to 0..=MAX_NODE_SCORE by the highest one; `reverse` makes lower raw scores better
/// (kube: `helper.DefaultNormalizeScore`).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// The message of a `FailedScheduling` event when no node fits (kube: `FitError.Error()`):
/// `0/3 nodes are available: 1 node(s) had untolerated taint {k: }, 2 Insufficient memory.` —
/// each reason prefixed by how many nodes gave it, sorted as strings.
pub fn fit_error_message(num_all_nodes: usize, reasons: &HashMap<Reason, usize>) -> String {
    if num_all_nodes == 0 {
        return "no nodes available to schedule pods".to_owned();
    }
    let mut parts: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    parts.sort();
    let mut message = format!("0/{num_all_nodes} nodes are available");
    if !parts.is_empty() {
        message.push_str(": ");
        message.push_str(&parts.join(", "));
        message.push('.');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize, reasons: &[(&'static str, usize)]) -> String {
        let map = reasons
            .iter()
            .map(|&(r, c)| (Reason::Borrowed(r), c))
            .collect();
        fit_error_message(n, &map)
    }

    #[test]
    fn fit_error_messages_match_kube_scheduler() {
        assert_eq!(
            message(3, &[("Insufficient cpu", 3)]),
            "0/3 nodes are available: 3 Insufficient cpu."
        );
        assert_eq!(
            message(
                3,
                &[
                    ("Insufficient memory", 2),
                    (
                        "node(s) had untolerated taint {node.kubernetes.io/unreachable: }",
                        1
                    )
                ]
            ),
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {node.kubernetes.io/unreachable: }, 2 Insufficient memory."
        );
        // Sorted as strings, like kube: "10 ..." before "2 ...".
        assert_eq!(
            message(
                12,
                &[("node(s) were unschedulable", 2), ("Insufficient cpu", 10)]
            ),
            "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) were unschedulable."
        );
        assert_eq!(message(0, &[]), "no nodes available to schedule pods");
        assert_eq!(message(2, &[]), "0/2 nodes are available");
    }

    #[test]
    fn default_normalize_scales_and_reverses() {
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 100]);
    }
}
