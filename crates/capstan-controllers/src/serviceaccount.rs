//! The `serviceaccount-controller`: every active namespace has a `default` ServiceAccount, created
//! when the namespace appears and re-created when someone deletes it (kube's
//! `pkg/controller/serviceaccount/serviceaccounts_controller.go`).
//!
//! Level-triggered on namespaces; ServiceAccount events named `default` map back to their
//! namespace. Namespaces that are not `Active` (being deleted) are left alone.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;

/// Name of the ServiceAccount every namespace gets.
const DEFAULT_SERVICE_ACCOUNT: &str = "default";

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .watches(
            accounts,
            watcher::Config::default(),
            |sa: ServiceAccount| {
                (sa.name_any() == DEFAULT_SERVICE_ACCOUNT)
                    .then(|| sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)))
                    .flatten()
            },
        )
        .graceful_shutdown_on(async move { shutdown.cancelled_owned().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let name = ns.name_any();
    let span = tracing::debug_span!("reconcile", controller = "serviceaccount", key = %name);
    async move {
        if !is_active(&ns) {
            return Ok(Action::await_change());
        }
        let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
        if accounts.get_opt(DEFAULT_SERVICE_ACCOUNT).await?.is_some() {
            return Ok(Action::await_change());
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT_SERVICE_ACCOUNT.to_owned()),
                namespace: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match accounts.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::info!(namespace = %name, "created default service account"),
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            // The namespace started terminating between our read and the create.
            Err(kube::Error::Api(s)) if s.is_forbidden() || s.is_not_found() => {}
            Err(e) => return Err(e),
        }
        Ok(Action::await_change())
    }
    .instrument(span)
    .await
}

fn error_policy(_ns: Arc<Namespace>, err: &kube::Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(controller = "serviceaccount", error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// Whether a namespace is `Active`: not being deleted (kube checks `status.phase`).
fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Active")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;

    fn ns(phase: Option<&str>, deleting: bool) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("n".into()),
                deletion_timestamp: deleting.then_some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                    ),
                ),
                ..ObjectMeta::default()
            },
            status: Some(NamespaceStatus {
                phase: phase.map(str::to_owned),
                ..Default::default()
            }),
            ..Namespace::default()
        }
    }

    #[test]
    fn only_active_namespaces_get_a_default_service_account() {
        for (phase, deleting, want) in [
            (Some("Active"), false, true),
            (None, false, true),
            (Some("Terminating"), false, false),
            (Some("Terminating"), true, false),
            (Some("Active"), true, false),
        ] {
            assert_eq!(
                is_active(&ns(phase, deleting)),
                want,
                "{phase:?} deleting={deleting}"
            );
        }
    }
}
