//! The scheduling queue, after kube-scheduler's: an active queue (highest priority first, then
//! oldest), a backoff queue for pods that failed recently (initial backoff doubling up to a maximum),
//! and the unschedulable pods, which wait for a cluster event (node added or updated, assigned pod
//! gone) or, at the latest, a maximum time before being tried again.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::types::{PodInfo, PodKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Active,
    Backoff,
    Unschedulable,
    /// Popped: being scheduled or bound.
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<PodInfo>,
    stage: Stage,
    /// Scheduling attempts so far.
    attempts: u32,
    /// Identifies the entry's current heap item (older heap items are stale).
    seq: u64,
    last_failure: Option<Instant>,
}

/// Queue timing (kube: `podInitialBackoffSeconds`, `podMaxBackoffSeconds`,
/// `podMaxInUnschedulablePodsDuration`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueTiming {
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_unschedulable: Duration,
}

/// Pending pods waiting for a scheduling attempt.
#[derive(Debug)]
pub(crate) struct SchedulingQueue {
    timing: QueueTiming,
    entries: HashMap<PodKey, Entry>,
    /// (priority, oldest first) -> key
    active: BinaryHeap<(i32, Reverse<u64>, PodKey)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, PodKey)>>,
    unschedulable: HashSet<PodKey>,
    next_seq: u64,
}

impl SchedulingQueue {
    pub(crate) fn new(timing: QueueTiming) -> Self {
        SchedulingQueue {
            timing,
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            unschedulable: HashSet::new(),
            next_seq: 0,
        }
    }

    /// Backoff after `attempts` failures: initial, doubled per further attempt, capped.
    pub(crate) fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.timing.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.timing.max_backoff {
                return self.timing.max_backoff;
            }
        }
        d.min(self.timing.max_backoff)
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn make_active(&mut self, key: &PodKey) {
        let seq = self.seq();
        if let Some(e) = self.entries.get_mut(key) {
            e.stage = Stage::Active;
            e.seq = seq;
            self.active
                .push((e.pod.priority, Reverse(seq), key.clone()));
        }
        self.unschedulable.remove(key);
    }

    fn make_backoff(&mut self, key: &PodKey, until: Instant) {
        let seq = self.seq();
        if let Some(e) = self.entries.get_mut(key) {
            e.stage = Stage::Backoff;
            e.seq = seq;
            self.backoff.push(Reverse((until, seq, key.clone())));
        }
        self.unschedulable.remove(key);
    }

    fn backoff_until(&self, e: &Entry) -> Option<Instant> {
        e.last_failure
            .map(|t| t + self.backoff_duration(e.attempts))
    }

    /// Adds a pending pod, or updates the one queued. An unschedulable pod whose scheduling inputs
    /// changed is retried (after its backoff).
    pub(crate) fn add_or_update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let key = pod.key.clone();
        match self.entries.get_mut(&key) {
            None => {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        pod,
                        stage: Stage::Active,
                        attempts: 0,
                        seq: 0,
                        last_failure: None,
                    },
                );
                self.make_active(&key);
            }
            Some(e) => {
                let changed = !e.pod.same_scheduling_inputs(&pod);
                e.pod = pod;
                if changed && e.stage == Stage::Unschedulable {
                    self.retry(&key, now);
                }
            }
        }
    }

    /// Moves an unschedulable pod to backoff (if still backing off) or active.
    fn retry(&mut self, key: &PodKey, now: Instant) {
        let until = self.entries.get(key).and_then(|e| self.backoff_until(e));
        match until {
            Some(until) if until > now => self.make_backoff(key, until),
            _ => self.make_active(key),
        }
    }

    pub(crate) fn remove(&mut self, key: &str) {
        self.entries.remove(key);
        self.unschedulable.remove(key);
    }

    /// Moves pods whose backoff ended to the active queue, then takes the next one.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<Arc<PodInfo>> {
        self.flush_backoff(now);
        while let Some((_, Reverse(seq), key)) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            if e.stage != Stage::Active || e.seq != seq {
                continue;
            }
            e.stage = Stage::InFlight;
            e.attempts += 1;
            return Some(e.pod.clone());
        }
        None
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, seq, key))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            let live = self
                .entries
                .get(&key)
                .is_some_and(|e| e.stage == Stage::Backoff && e.seq == seq);
            if live {
                self.make_active(&key);
            }
        }
    }

    /// The pod fitted no node: it waits for a cluster event.
    pub(crate) fn mark_unschedulable(&mut self, key: &PodKey, now: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.stage = Stage::Unschedulable;
            e.last_failure = Some(now);
            e.seq = 0;
            self.unschedulable.insert(key.clone());
        }
    }

    /// The attempt failed for another reason (binding error): retry after the backoff.
    pub(crate) fn mark_failed(&mut self, key: &PodKey, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.last_failure = Some(now);
        let attempts = e.attempts;
        let until = now + self.backoff_duration(attempts);
        self.make_backoff(key, until);
    }

    /// The pod is bound: forget it.
    pub(crate) fn done(&mut self, key: &str) {
        self.remove(key);
    }

    /// A cluster event may have made unschedulable pods fit: retry them all.
    pub(crate) fn move_all_unschedulable(&mut self, now: Instant) {
        let keys: Vec<PodKey> = self.unschedulable.iter().cloned().collect();
        for key in keys {
            self.retry(&key, now);
        }
    }

    /// Retries pods that waited longer than the maximum for a cluster event.
    pub(crate) fn flush_unschedulable_leftover(&mut self, now: Instant) {
        let max = self.timing.max_unschedulable;
        let stale: Vec<PodKey> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries
                    .get(*k)
                    .and_then(|e| e.last_failure)
                    .is_some_and(|t| now.duration_since(t) >= max)
            })
            .cloned()
            .collect();
        for key in stale {
            self.retry(&key, now);
        }
    }

    /// When something next becomes due: a backoff expiry or a leftover flush.
    pub(crate) fn next_wakeup(&self) -> Option<Instant> {
        let backoff = self.backoff.peek().map(|Reverse((t, _, _))| *t);
        let leftover = self
            .unschedulable
            .iter()
            .filter_map(|k| self.entries.get(k).and_then(|e| e.last_failure))
            .min()
            .map(|t| t + self.timing.max_unschedulable);
        match (backoff, leftover) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Keys of queued pods that are not being scheduled or bound right now.
    pub(crate) fn waiting_keys(&self) -> Vec<PodKey> {
        self.entries
            .iter()
            .filter(|(_, e)| e.stage != Stage::InFlight)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// (active, backoff, unschedulable, in flight)
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for e in self.entries.values() {
            match e.stage {
                Stage::Active => c.0 += 1,
                Stage::Backoff => c.1 += 1,
                Stage::Unschedulable => c.2 += 1,
                Stage::InFlight => c.3 += 1,
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod_info;
    use serde_json::json;

    fn queue() -> SchedulingQueue {
        SchedulingQueue::new(QueueTiming {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(300),
        })
    }

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod_info(name, json!({"spec": {"priority": priority}})))
    }

    #[test]
    fn backoff_doubles_from_one_to_ten_seconds() {
        let q = queue();
        let secs: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn pops_by_priority_then_age() {
        let mut q = queue();
        let now = Instant::now();
        q.add_or_update(pod("a", 0), now);
        q.add_or_update(pod("b", 10), now);
        q.add_or_update(pod("c", 0), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop(now))
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(order, vec!["b", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event_then_their_backoff() {
        let mut q = queue();
        let t0 = Instant::now();
        let p = pod("a", 0);
        q.add_or_update(p.clone(), t0);
        assert!(q.pop(t0).is_some());
        q.mark_unschedulable(&p.key, t0);
        assert!(
            q.pop(t0 + Duration::from_secs(30)).is_none(),
            "waits for an event"
        );
        // A node event half a second later: still backing off (1 s after the first failure).
        q.move_all_unschedulable(t0 + Duration::from_millis(500));
        assert!(q.pop(t0 + Duration::from_millis(900)).is_none());
        assert_eq!(q.next_wakeup(), Some(t0 + Duration::from_secs(1)));
        let again = q
            .pop(t0 + Duration::from_secs(1))
            .expect("due after backoff");
        assert_eq!(again.name, "a");
        // Second failure: the event finds the pod past its 2 s backoff and activates it at once.
        q.mark_unschedulable(&p.key, t0 + Duration::from_secs(1));
        q.move_all_unschedulable(t0 + Duration::from_secs(4));
        assert!(q.pop(t0 + Duration::from_secs(4)).is_some());
    }

    #[test]
    fn leftover_unschedulable_pods_are_retried_after_the_maximum() {
        let mut q = queue();
        let t0 = Instant::now();
        let p = pod("a", 0);
        q.add_or_update(p.clone(), t0);
        q.pop(t0);
        q.mark_unschedulable(&p.key, t0);
        q.flush_unschedulable_leftover(t0 + Duration::from_secs(299));
        assert!(q.pop(t0 + Duration::from_secs(299)).is_none());
        q.flush_unschedulable_leftover(t0 + Duration::from_secs(300));
        assert!(q.pop(t0 + Duration::from_secs(300)).is_some());
    }

    #[test]
    fn status_only_updates_do_not_requeue_but_spec_changes_do() {
        let mut q = queue();
        let t0 = Instant::now();
        let p = pod("a", 0);
        q.add_or_update(p.clone(), t0);
        q.pop(t0);
        q.mark_unschedulable(&p.key, t0);
        let mut status_only = (*p).clone();
        status_only.terminal = false;
        q.add_or_update(Arc::new(status_only), t0 + Duration::from_secs(5));
        assert!(q.pop(t0 + Duration::from_secs(5)).is_none());
        let mut relabelled = (*p).clone();
        relabelled.labels.insert("x".into(), "y".into());
        q.add_or_update(Arc::new(relabelled), t0 + Duration::from_secs(5));
        assert!(q.pop(t0 + Duration::from_secs(5)).is_some());
    }

    #[test]
    fn failed_bindings_back_off_and_deleted_pods_vanish() {
        let mut q = queue();
        let t0 = Instant::now();
        let p = pod("a", 0);
        q.add_or_update(p.clone(), t0);
        q.pop(t0);
        q.mark_failed(&p.key, t0);
        assert!(q.pop(t0 + Duration::from_millis(999)).is_none());
        assert!(q.pop(t0 + Duration::from_secs(1)).is_some());
        q.mark_failed(&p.key, t0 + Duration::from_secs(1));
        q.remove(&p.key);
        assert!(q.pop(t0 + Duration::from_secs(60)).is_none());
        assert_eq!(q.counts(), (0, 0, 0, 0));
    }
}
