//! The `namespace-controller`: empties a namespace that is being deleted, then releases it.
//!
//! `DELETE /api/v1/namespaces/x` only marks the namespace (`deletionTimestamp`, phase `Terminating`);
//! the `kubernetes` entry in `spec.finalizers` keeps it until this controller has deleted every
//! namespaced object in it (found through discovery: every namespaced resource that supports
//! `delete`, with `deletecollection` when offered, else list and delete one by one). While content
//! remains it records kube's five deletion conditions on the namespace status and checks again
//! later; once nothing is left it removes its finalizer through the `finalize` subresource, and the
//! API server deletes the namespace. Mirrors kube's `pkg/controller/namespace/deletion`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;

/// The finalizer token this controller owns in `spec.finalizers`.
const FINALIZER: &str = "kubernetes";
/// kube's default wait for objects that still carry finalizers.
const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
const GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// The conditions this controller maintains, in kube's order, with their "all is well" reason and
/// message.
const CONDITIONS: [(&str, &str, &str); 5] = [
    (
        DISCOVERY_FAILURE,
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        GV_PARSING_FAILURE,
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        CONTENT_FAILURE,
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        CONTENT_REMAINING,
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        FINALIZERS_REMAINING,
        "ContentRemoved",
        "All content successfully removed",
    ),
];

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .graceful_shutdown_on(async move { shutdown.cancelled_owned().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_ns: Arc<Namespace>, err: &kube::Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(controller = "namespace", error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let name = ns.name_any();
    let span = tracing::info_span!("reconcile", controller = "namespace", key = %name);
    async move {
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(Action::await_change());
        }
        // Several parties edit a terminating namespace: start from its newest state.
        let api: Api<Namespace> = Api::all(ctx.client.clone());
        let Some(mut ns) = api.get_opt(&name).await? else {
            return Ok(Action::await_change());
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(Action::await_change());
        }
        if !finalizers(&ns).iter().any(|f| f == FINALIZER) {
            return Ok(Action::await_change());
        }

        let outcome = delete_all_content(&ctx.client, &name).await;
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let status = ns.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        if update_conditions(conditions, &outcome.conditions(), &now) {
            // kube does not let a failed status write stop the deletion.
            if let Err(e) = api.replace_status(&name, &PostParams::default(), &ns).await {
                tracing::warn!(error = %e, "could not update namespace deletion conditions");
            }
        }
        if outcome.discovery_error.is_some() || !outcome.errors.is_empty() {
            tracing::info!(errors = ?outcome.errors, discovery = ?outcome.discovery_error, "namespace content deletion failed; retrying");
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        if outcome.estimate > 0 {
            let wait = outcome.estimate / 2 + 1;
            tracing::debug!(estimate = outcome.estimate, "content remains in namespace");
            return Ok(Action::requeue(Duration::from_secs(wait.unsigned_abs())));
        }
        finalize(&api, &name).await?;
        tracing::info!("namespace content removed; finalized");
        Ok(Action::await_change())
    }
    .instrument(span)
    .await
}

fn finalizers(ns: &Namespace) -> Vec<String> {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
}

/// Removes our token from `spec.finalizers` with `PUT .../finalize`, re-reading on conflict.
async fn finalize(api: &Api<Namespace>, name: &str) -> Result<(), kube::Error> {
    for _ in 0..5 {
        let Some(mut ns) = api.get_opt(name).await? else {
            return Ok(());
        };
        let mut left: Vec<String> = finalizers(&ns)
            .into_iter()
            .filter(|f| f != FINALIZER)
            .collect();
        left.sort();
        left.dedup();
        ns.spec.get_or_insert_with(Default::default).finalizers = Some(left);
        match api
            .replace_subresource("finalize", name, &PostParams::default(), &ns)
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(()),
            Err(kube::Error::Api(s)) if s.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What one pass over a namespace's content found.
#[derive(Debug, Default)]
struct Outcome {
    discovery_error: Option<String>,
    /// One message per resource type that could not be emptied.
    errors: Vec<String>,
    /// Seconds until the remaining content is expected to be gone.
    estimate: i64,
    /// `resource.group` -> instances left.
    remaining: BTreeMap<String, usize>,
    /// finalizer -> instances carrying it.
    finalizers: BTreeMap<String, usize>,
}

impl Outcome {
    /// The failing conditions (status `True`); the others are reported as fine.
    fn conditions(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut out = Vec::new();
        if let Some(e) = &self.discovery_error {
            out.push((DISCOVERY_FAILURE, "DiscoveryFailed", e.clone()));
        }
        if !self.errors.is_empty() {
            let mut msgs = self.errors.clone();
            msgs.sort();
            out.push((
                CONTENT_FAILURE,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    msgs.len(),
                    msgs.join(", ")
                ),
            ));
        }
        let mut remaining: Vec<String> = self
            .remaining
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(gr, n)| format!("{gr} has {n} resource instances"))
            .collect();
        remaining.sort();
        if !remaining.is_empty() {
            out.push((
                CONTENT_REMAINING,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", remaining.join(", ")),
            ));
        }
        let mut finalizers: Vec<String> = self
            .finalizers
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        finalizers.sort();
        if !finalizers.is_empty() {
            out.push((
                FINALIZERS_REMAINING,
                "SomeFinalizerRemain",
                format!("Some finalizers are remaining: {}", finalizers.join(", ")),
            ));
        }
        out
    }
}

/// Sets every maintained condition: the failing ones as given, the others to their "ok" variant.
/// Returns whether anything changed. `lastTransitionTime` moves only when the status flips.
fn update_conditions(
    conditions: &mut Vec<NamespaceCondition>,
    failing: &[(&'static str, &'static str, String)],
    now: &Time,
) -> bool {
    let mut changed = false;
    for (kind, ok_reason, ok_message) in CONDITIONS {
        let (status, reason, message) = match failing.iter().find(|(k, _, _)| *k == kind) {
            Some((_, reason, message)) => ("True", *reason, message.clone()),
            None => ("False", ok_reason, ok_message.to_owned()),
        };
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            None => {
                conditions.push(NamespaceCondition {
                    type_: kind.to_owned(),
                    status: status.to_owned(),
                    reason: Some(reason.to_owned()),
                    message: Some(message),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
            Some(c) => {
                if c.status != status
                    || c.reason.as_deref() != Some(reason)
                    || c.message.as_deref() != Some(message.as_str())
                {
                    if c.status != status {
                        c.last_transition_time = Some(now.clone());
                    }
                    c.status = status.to_owned();
                    c.reason = Some(reason.to_owned());
                    c.message = Some(message);
                    changed = true;
                }
            }
        }
    }
    changed
}

/// kube's `GroupVersionResource.String()`: `apps/v1, Resource=deployments`, `/v1, Resource=pods`.
fn gvr_string(ar: &ApiResource) -> String {
    format!("{}/{}, Resource={}", ar.group, ar.version, ar.plural)
}

/// Deletes everything namespaced in `namespace` and reports what is left.
async fn delete_all_content(client: &kube::Client, namespace: &str) -> Outcome {
    let mut outcome = Outcome::default();
    let resources = match Discovery::new(client.clone()).run().await {
        Ok(d) => deletable_namespaced(&d),
        Err(e) => {
            outcome.discovery_error =
                Some(format!("Discovery failed for some groups, 1 failing: {e}"));
            return outcome;
        }
    };
    for (ar, caps) in resources {
        match delete_resource_content(client, namespace, &ar, &caps).await {
            Ok(left) => {
                outcome.estimate = outcome.estimate.max(left.estimate);
                if left.count > 0 {
                    *outcome
                        .remaining
                        .entry(format!("{}.{}", ar.plural, ar.group))
                        .or_default() += left.count;
                    for (f, n) in left.finalizers {
                        *outcome.finalizers.entry(f).or_default() += n;
                    }
                }
            }
            Err(e) => outcome.errors.push(e),
        }
    }
    outcome
}

/// The preferred version of every namespaced resource that can be deleted.
fn deletable_namespaced(discovery: &Discovery) -> Vec<(ApiResource, ApiCapabilities)> {
    discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(_, caps)| {
            caps.scope == Scope::Namespaced && caps.supports_operation(verbs::DELETE)
        })
        .collect()
}

/// What is left of one resource type after a deletion pass.
#[derive(Debug, Default)]
struct Left {
    count: usize,
    estimate: i64,
    finalizers: BTreeMap<String, usize>,
}

async fn delete_resource_content(
    client: &kube::Client,
    namespace: &str,
    ar: &ApiResource,
    caps: &ApiCapabilities,
) -> Result<Left, String> {
    let fail = |e: kube::Error| format!("{}: {e}", gvr_string(ar));
    // Pods end gracefully: estimate how long before deleting them (kube does it in that order).
    let mut estimate = 0;
    if ar.group.is_empty() && ar.plural == "pods" {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        for pod in pods.list(&ListParams::default()).await.map_err(fail)? {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            if let Some(grace) = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
            {
                estimate = estimate.max(grace);
            }
        }
    }
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, ar);
    let background = DeleteParams::background();
    let can_list = caps.supports_operation(verbs::LIST);
    if caps.supports_operation(verbs::DELETE_COLLECTION) {
        match api
            .delete_collection(&background, &ListParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => {}
            Err(e) => return Err(fail(e)),
        }
    } else if can_list {
        for item in api.list(&ListParams::default()).await.map_err(fail)? {
            match api.delete(&item.name_any(), &background).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => {}
                Err(e) => return Err(fail(e)),
            }
        }
    }
    if !can_list {
        return Ok(Left {
            estimate,
            ..Left::default()
        });
    }
    let items = api.list(&ListParams::default()).await.map_err(fail)?.items;
    if items.is_empty() {
        return Ok(Left::default());
    }
    let mut finalizers = BTreeMap::new();
    for item in &items {
        for f in item.finalizers() {
            *finalizers.entry(f.clone()).or_insert(0) += 1;
        }
    }
    let count = items.len();
    if estimate != 0 {
        return Ok(Left {
            count,
            estimate,
            finalizers,
        });
    }
    if !finalizers.is_empty() {
        return Ok(Left {
            count,
            estimate: FINALIZER_ESTIMATE_SECONDS,
            finalizers,
        });
    }
    Err(format!(
        "unexpected items still remain in namespace: {namespace} for gvr: {}",
        gvr_string(ar)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn all_conditions_are_reported_false_when_content_is_gone() {
        let mut conditions = Vec::new();
        assert!(update_conditions(
            &mut conditions,
            &Outcome::default().conditions(),
            &now()
        ));
        let got: Vec<_> = conditions
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (DISCOVERY_FAILURE, "False", "ResourcesDiscovered"),
                (GV_PARSING_FAILURE, "False", "ParsedGroupVersions"),
                (CONTENT_FAILURE, "False", "ContentDeleted"),
                (CONTENT_REMAINING, "False", "ContentRemoved"),
                (FINALIZERS_REMAINING, "False", "ContentRemoved"),
            ]
        );
        // A second identical pass changes nothing.
        assert!(!update_conditions(
            &mut conditions,
            &Outcome::default().conditions(),
            &now()
        ));
    }

    #[test]
    fn remaining_content_and_finalizers_use_kube_messages() {
        let outcome = Outcome {
            remaining: BTreeMap::from([("pods.".to_owned(), 2), ("configmaps.".to_owned(), 1)]),
            finalizers: BTreeMap::from([("example.com/hold".to_owned(), 1)]),
            estimate: 15,
            ..Outcome::default()
        };
        let mut conditions = Vec::new();
        update_conditions(&mut conditions, &outcome.conditions(), &now());
        let find = |t: &str| conditions.iter().find(|c| c.type_ == t).expect("condition");
        let c = find(CONTENT_REMAINING);
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            c.message.as_deref(),
            Some(
                "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances"
            )
        );
        let f = find(FINALIZERS_REMAINING);
        assert_eq!(f.reason.as_deref(), Some("SomeFinalizerRemain"));
        assert_eq!(
            f.message.as_deref(),
            Some("Some finalizers are remaining: example.com/hold in 1 resource instances")
        );
    }

    #[test]
    fn content_failure_message_counts_failed_types() {
        let outcome = Outcome {
            errors: vec!["b failed".into(), "a failed".into()],
            ..Outcome::default()
        };
        let failing = outcome.conditions();
        assert_eq!(
            failing[0],
            (
                CONTENT_FAILURE,
                "ContentDeletionFailed",
                "Failed to delete all resource types, 2 remaining: a failed, b failed".to_owned()
            )
        );
    }

    #[test]
    fn gvr_strings_match_kube() {
        let pods = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Pod".into(),
            plural: "pods".into(),
        };
        assert_eq!(gvr_string(&pods), "/v1, Resource=pods");
    }
}
