//! Capstan's scheduler: watches pending pods and nodes through the API server (kube-rs, HTTPS),
//! picks a node for each pod with kube-scheduler's filter/score plugins, and writes the decision
//! through the `pods/binding` subresource, with `Scheduled` / `FailedScheduling` events and the
//! `PodScheduled` condition as kube-scheduler writes them.
//!
//! Map: [`types`] (compact pod/node views) -> [`cache`] (nodes, assigned and assumed pods, sums)
//! -> [`framework`] (the `Filter` / `Score` contract) and [`plugins`] (one module per plugin, one
//! registry) -> [`algorithm`] (one decision) -> the private queue and loop (`queue`, `scheduler`).
//!
//! The scheduler is only an API client: it never depends on the API server, store, controllers or
//! kubelet crates, and meets them only through API objects. Leader election is the binary's job.

pub mod algorithm;
pub mod cache;
pub mod framework;
pub mod plugins;
pub mod quantity;
mod queue;
mod scheduler;
pub mod selectors;
pub mod types;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::algorithm::Profile;

/// `spec.schedulerName` this scheduler serves by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// The crate's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid quantity {0:?}")]
    InvalidQuantity(String),
    #[error("unknown scheduler plugin {0:?}")]
    UnknownPlugin(String),
}

/// Scheduler settings (kube-scheduler's configuration names).
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Pods whose `spec.schedulerName` equals this are ours.
    pub scheduler_name: String,
    /// `reportingInstance` of events.
    pub instance: String,
    /// 0 = adaptive (50% - nodes/125, at least 5%); at least 100 nodes are always evaluated.
    pub percentage_of_nodes_to_score: u32,
    /// First retry delay of a pod that failed (`podInitialBackoffSeconds`), doubled per attempt.
    pub pod_initial_backoff: Duration,
    /// Cap of the retry delay (`podMaxBackoffSeconds`).
    pub pod_max_backoff: Duration,
    /// Longest an unschedulable pod waits for a cluster event before a retry.
    pub pod_max_in_unschedulable_pods_duration: Duration,
    /// Binding requests in flight at once.
    pub parallel_bindings: usize,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_owned(),
            instance: DEFAULT_SCHEDULER_NAME.to_owned(),
            percentage_of_nodes_to_score: 0,
            pod_initial_backoff: Duration::from_secs(1),
            pod_max_backoff: Duration::from_secs(10),
            pod_max_in_unschedulable_pods_duration: Duration::from_secs(300),
            parallel_bindings: 64,
        }
    }
}

/// The scheduler; see the crate docs.
pub struct Scheduler {
    client: kube::Client,
    options: SchedulerOptions,
    profile: Profile,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("options", &self.options)
            .field("profile", &self.profile)
            .finish()
    }
}

impl Scheduler {
    /// A scheduler with kube-scheduler's default plugins.
    pub fn new(client: kube::Client, options: SchedulerOptions) -> Self {
        Scheduler {
            client,
            options,
            profile: Profile::default_profile(),
        }
    }

    /// Replaces the plugin profile.
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Schedules pods until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        scheduler::run(self.client, self.options, self.profile, shutdown).await;
    }
}
