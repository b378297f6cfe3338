//! The `local-path` provisioner, k3s's default storage: a claim of a StorageClass whose provisioner
//! is `rancher.io/local-path` gets a PersistentVolume of its own — a directory on one node
//! (`hostPath`, type `DirectoryOrCreate`, pinned to that node by node affinity) — and is bound to
//! it. The directory is created by that node's kubelet when a pod first mounts it, under the
//! storage dir the kubelet announces on its Node (`capstan.io/local-storage-dir`).
//!
//! Which node: the claim's `volume.kubernetes.io/selected-node` annotation if set, else for
//! `WaitForFirstConsumer` (the class's default mode) the node of the first scheduled pod that uses
//! the claim, else (`Immediate`) the first Ready schedulable node. Binding is what kube's PV
//! controller does for a provisioned volume: the claim's `spec.volumeName`, then both statuses
//! `Bound`. A released volume (its claim deleted) is deleted when its reclaim policy is `Delete`
//! (its node's kubelet then removes the directory), kept as `Released` when `Retain`.
//!
//! It also releases the `kubernetes.io/pvc-protection` finalizer of deleted claims no running pod
//! uses (kube's pvc-protection controller).
//!
//! Claims of other classes (or none) bind to volumes an administrator created: `volume_binding`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Context;
use crate::util::events::{EventType, Recorder};

/// The provisioner name k3s's local-path-provisioner registers.
pub(crate) const PROVISIONER: &str = "rancher.io/local-path";
/// The Node annotation with the directory the node's volumes go under (set by the kubelet).
const STORAGE_DIR_ANNOTATION: &str = "capstan.io/local-storage-dir";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let claims: Api<PersistentVolumeClaim> = Api::all(ctx.client.clone());
    let pods = ctx.pods.touched();
    let released = released_volumes(ctx.clone());
    let claims_controller = Controller::new(claims, watcher::Config::default())
        .watches_shared_stream(pods, |pod: Arc<Pod>| {
            // Scheduled pods are the first consumers WaitForFirstConsumer claims wait for; any pod
            // change (its deletion too) may release a deleted claim's protection.
            let ns = pod.namespace().unwrap_or_default();
            let refs: Vec<ObjectRef<PersistentVolumeClaim>> = pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(|c| ObjectRef::new(&c.claim_name).within(&ns))
                .collect();
            refs
        })
        .graceful_shutdown_on(async move { shutdown.cancelled_owned().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    tokio::select! {
        () = claims_controller => {}
        () = released => {}
    }
}

fn error_policy(
    _claim: Arc<PersistentVolumeClaim>,
    err: &kube::Error,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(controller = "persistentvolume", error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

/// The finalizer that keeps a claim while pods use it (added by the API server at create).
const PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// The `pvc-protection` controller's part: a deleted claim keeps its finalizer while a pod that
/// is not finished uses it (the pod watch brings the claim back here when that pod goes), so its
/// volume — and with `Delete` the data — outlives no pod that still mounts it.
async fn release_protection(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
) -> Result<Action, kube::Error> {
    let finalizers = claim.finalizers();
    if !finalizers.iter().any(|f| f == PROTECTION_FINALIZER) {
        return Ok(Action::await_change());
    }
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let in_use = pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .any(|p| {
            let finished = p
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
            !finished && uses_claim(p, &name)
        });
    if in_use {
        // Re-checked when a pod using it changes; the requeue is a safety net.
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let rest: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != PROTECTION_FINALIZER)
        .collect();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    // The resourceVersion makes it a compare-and-swap: a finalizer added meanwhile is not lost.
    let patch =
        json!({"metadata": {"finalizers": rest, "resourceVersion": claim.resource_version()}});
    match claims
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        Err(e) => Err(e),
    }
}

fn uses_claim(pod: &Pod, claim: &str) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == claim)
        })
}

/// The name of the volume provisioned for a claim (kube's `pvc-<claim uid>`).
fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.uid().unwrap_or_default())
}

async fn reconcile(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Action, kube::Error> {
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let span = tracing::debug_span!("reconcile", controller = "persistentvolume", key = %format!("{ns}/{name}"));
    async move {
        if claim.metadata.deletion_timestamp.is_some() {
            return release_protection(&ctx, &claim).await;
        }
        let spec = claim.spec.clone().unwrap_or_default();
        let class_name = spec.storage_class_name.clone().unwrap_or_default();
        let classes: Api<StorageClass> = Api::all(ctx.client.clone());
        let class = if class_name.is_empty() {
            None
        } else {
            classes.get_opt(&class_name).await?
        };
        // Classes nobody provisions here bind to volumes an administrator created.
        let Some(class) = class.filter(|c| c.provisioner == PROVISIONER) else {
            return crate::volume_binding::bind(&ctx, &claim).await;
        };
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
        if let Some(bound_to) = spec.volume_name.clone().filter(|v| !v.is_empty()) {
            // Bound (or half-way): finish the statuses.
            if let Some(pv) = volumes.get_opt(&bound_to).await? {
                finish_binding(&claims, &volumes, &claim, &pv).await?;
            }
            return Ok(Action::await_change());
        }
        let recorder = Recorder::new(ctx.client.clone(), "persistentvolume-controller");
        // Until then the claim stays `Pending`, the phase the API server gave it.
        let Some(node_name) = chosen_node(&ctx, &claim, &class).await? else {
            return Ok(Action::await_change());
        };
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let Some(node) = nodes.get_opt(&node_name).await? else {
            return Ok(Action::requeue(Duration::from_secs(5)));
        };
        let Some(dir) = node.annotations().get(STORAGE_DIR_ANNOTATION).cloned() else {
            recorder
                .publish(
                    &*claim,
                    EventType::Warning,
                    "ProvisioningFailed",
                    format!("node \"{node_name}\" runs no Capstan kubelet with local storage (no {STORAGE_DIR_ANNOTATION} annotation)"),
                )
                .await;
            return Ok(Action::requeue(Duration::from_secs(30)));
        };
        let hostname = node
            .labels()
            .get(HOSTNAME_LABEL)
            .cloned()
            .unwrap_or_else(|| node_name.clone());
        let reclaim = class
            .reclaim_policy
            .clone()
            .unwrap_or_else(|| "Delete".to_owned());
        let pv_value = volume_for(&claim, &class_name, &reclaim, &dir, &hostname);
        let pv: PersistentVolume = serde_json::from_value(pv_value)
            .map_err(kube::Error::SerdeError)?;
        let pv_name = volume_name(&claim);
        let pv = match volumes.create(&PostParams::default(), &pv).await {
            Ok(pv) => {
                recorder
                    .publish(
                        &*claim,
                        EventType::Normal,
                        "ProvisioningSucceeded",
                        format!("Successfully provisioned volume {pv_name}"),
                    )
                    .await;
                pv
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => volumes.get(&pv_name).await?,
            Err(e) => return Err(e),
        };
        // Bind: the claim names its volume (allowed once, from empty), then both statuses.
        let bind = json!({"metadata": {"annotations": {
            "pv.kubernetes.io/bind-completed": "yes",
            "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.kubernetes.io/storage-provisioner": PROVISIONER,
        }}, "spec": {"volumeName": pv_name}});
        let claim = claims
            .patch(&name, &PatchParams::default(), &Patch::Merge(bind))
            .await?;
        finish_binding(&claims, &volumes, &claim, &pv).await?;
        tracing::info!(claim = %format!("{ns}/{name}"), volume = %pv_name, node = %node_name, "provisioned and bound a local-path volume");
        Ok(Action::await_change())
    }
    .instrument(span)
    .await
}

/// The PersistentVolume for `claim` on the node with hostname `hostname`, under `dir`.
fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &str,
    reclaim: &str,
    dir: &str,
    hostname: &str,
) -> Value {
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let spec = claim.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".to_owned());
    let access_modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]);
    let pv_name = volume_name(claim);
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name,
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": access_modes,
            "persistentVolumeReclaimPolicy": reclaim,
            "storageClassName": class,
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".to_owned()),
            // k3s's provisioner names the directory `<pv>_<namespace>_<claim>`.
            "hostPath": {"path": format!("{}/{pv_name}_{ns}_{name}", dir.trim_end_matches('/')), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}
            ]}]}},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": ns,
                "name": name,
                "uid": claim.uid().unwrap_or_default(),
            },
        },
    })
}

/// Where to provision: the selected node, the first consumer's node, or (Immediate) any Ready one.
async fn chosen_node(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
) -> Result<Option<String>, kube::Error> {
    if let Some(node) = claim.annotations().get(SELECTED_NODE) {
        return Ok(Some(node.clone()));
    }
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let consumer = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| uses_claim(p, &name))
        .filter_map(|p| p.spec?.node_name)
        .min();
    if consumer.is_some() || class.volume_binding_mode.as_deref() != Some("Immediate") {
        return Ok(consumer);
    }
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    Ok(nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|n| {
            !n.spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
        })
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter(|n| n.annotations().contains_key(STORAGE_DIR_ANNOTATION))
        .map(|n| n.name_any())
        .min())
}

/// Both statuses `Bound`: the claim's with the volume's capacity and access modes.
pub(crate) async fn finish_binding(
    claims: &Api<PersistentVolumeClaim>,
    volumes: &Api<PersistentVolume>,
    claim: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<(), kube::Error> {
    let pv_spec = pv.spec.clone().unwrap_or_default();
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        volumes
            .patch_status(
                &pv.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Bound"}})),
            )
            .await?;
    }
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        let capacity: BTreeMap<String, String> = pv_spec
            .capacity
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        claims
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "phase": "Bound",
                    "capacity": capacity,
                    "accessModes": pv_spec.access_modes.unwrap_or_default(),
                }})),
            )
            .await?;
    }
    Ok(())
}

/// Volumes of this provisioner whose claim is gone: deleted (`Delete`) or marked `Released`
/// (`Retain`), checked every few seconds.
async fn released_volumes(ctx: Arc<Context>) {
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    loop {
        if let Err(e) = reclaim_once(&ctx, &volumes).await {
            tracing::debug!(error = %e, "released-volume pass failed");
        }
        if let Err(e) = crate::volume_binding::sync_static_volumes(&ctx, &volumes).await {
            tracing::debug!(error = %e, "static volume pass failed");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

async fn reclaim_once(ctx: &Context, volumes: &Api<PersistentVolume>) -> Result<(), kube::Error> {
    for pv in volumes.list(&ListParams::default()).await?.items {
        if pv
            .annotations()
            .get("pv.kubernetes.io/provisioned-by")
            .map(String::as_str)
            != Some(PROVISIONER)
            || pv.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let spec = pv.spec.clone().unwrap_or_default();
        let Some(claim_ref) = spec.claim_ref.clone() else {
            continue;
        };
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(
            ctx.client.clone(),
            claim_ref.namespace.as_deref().unwrap_or_default(),
        );
        let claim = claims
            .get_opt(claim_ref.name.as_deref().unwrap_or_default())
            .await?;
        // The claim is gone, or a new claim of the same name is not the one this volume was for.
        let released = claim.is_none_or(|c| c.uid() != claim_ref.uid);
        if !released {
            continue;
        }
        match spec.persistent_volume_reclaim_policy.as_deref() {
            Some("Retain") => {
                if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Released") {
                    volumes
                        .patch_status(
                            &pv.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"phase": "Released"}})),
                        )
                        .await?;
                }
            }
            _ => {
                tracing::info!(volume = %pv.name_any(), "deleting the released local-path volume");
                match volumes
                    .delete(&pv.name_any(), &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provisioned_volume_is_pinned_to_its_node_and_names_its_claim() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "db", "uid": "u-1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
        }))
        .expect("claim");
        let pv = volume_for(
            &claim,
            "local-path",
            "Delete",
            "/var/lib/capstan/storage/",
            "node-a",
        );
        assert_eq!(pv["metadata"]["name"], "pvc-u-1");
        assert_eq!(pv["spec"]["capacity"]["storage"], "2Gi");
        assert_eq!(
            pv["spec"]["hostPath"]["path"],
            "/var/lib/capstan/storage/pvc-u-1_db_data"
        );
        assert_eq!(pv["spec"]["hostPath"]["type"], "DirectoryOrCreate");
        assert_eq!(
            pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
            json!(["node-a"])
        );
        assert_eq!(pv["spec"]["claimRef"]["uid"], "u-1");
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        // The document is a valid PersistentVolume.
        let typed: PersistentVolume = serde_json::from_value(pv).expect("typed");
        assert_eq!(
            typed.spec.and_then(|s| s.storage_class_name).as_deref(),
            Some("local-path")
        );
    }
}
