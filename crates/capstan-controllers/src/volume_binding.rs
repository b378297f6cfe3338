//! Static binding, what kube's PersistentVolume controller does for volumes an administrator
//! created: a claim whose class has no dynamic provisioner here (no class, `""`, a class with
//! another provisioner, or a class that does not exist) binds to the smallest Available volume of
//! the same class that satisfies it (access modes, capacity, volume mode, the claim's selector), or
//! to the volume it names in `spec.volumeName`; a volume pre-bound by its `claimRef` only to that
//! claim. Unbound volumes read `Available`; a statically bound volume whose claim is gone becomes
//! `Released` (its data is kept; an administrator clears `claimRef` to reuse it, as in Kubernetes).
//! It also plays kube's pv-protection controller: a deleted volume stays (`Terminating`) while a
//! claim is bound to it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;

use crate::Context;
use crate::util::events::{EventType, Recorder};
use crate::util::selector;

/// How often an unbound claim looks again for a volume (kube's PV controller resyncs too).
const RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// Bytes of a storage quantity (`10Gi`, `500M`, `1e9`), `None` when malformed.
fn bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * scale)
}

fn storage_of(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Option<f64> {
    map.and_then(|m| m.get("storage")).and_then(|q| bytes(&q.0))
}

fn phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether `pv` is reserved for `claim` by its `claimRef` (namespace and name; uid when set).
fn prebound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<bool> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some(
        r.namespace.as_deref() == claim.namespace().as_deref()
            && r.name.as_deref() == Some(claim.name_any().as_str())
            && r.uid
                .as_deref()
                .is_none_or(|u| u.is_empty() || Some(u) == claim.uid().as_deref()),
    )
}

/// Why `pv` cannot serve `claim`, or `None` when it can.
fn mismatch(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<&'static str> {
    let spec = pv.spec.clone().unwrap_or_default();
    let want = claim.spec.clone().unwrap_or_default();
    if pv.metadata.deletion_timestamp.is_some() || matches!(phase(pv), "Released" | "Failed") {
        return Some("not available");
    }
    if prebound_to(pv, claim) == Some(false) {
        return Some("already bound to a different claim");
    }
    if spec.storage_class_name.unwrap_or_default() != want.storage_class_name.unwrap_or_default() {
        return Some("storageClassName does not match");
    }
    let mode = |m: Option<String>| m.unwrap_or_else(|| "Filesystem".into());
    if mode(spec.volume_mode) != mode(want.volume_mode) {
        return Some("volumeMode does not match");
    }
    let modes = spec.access_modes.unwrap_or_default();
    if !want
        .access_modes
        .unwrap_or_default()
        .iter()
        .all(|m| modes.contains(m))
    {
        return Some("access modes do not match");
    }
    let requested =
        storage_of(want.resources.as_ref().and_then(|r| r.requests.as_ref())).unwrap_or(0.0);
    if storage_of(spec.capacity.as_ref()).is_none_or(|c| c < requested) {
        return Some("capacity is smaller than requested");
    }
    if want.selector.is_some()
        && !selector::matches(want.selector.as_ref(), pv.metadata.labels.as_ref())
    {
        return Some("labels do not match the claim's selector");
    }
    None
}

/// The volume `claim` should bind to: the one it names, else a volume pre-bound to it, else the
/// smallest that fits (ties by name).
pub(crate) fn best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [PersistentVolume],
) -> Result<&'a PersistentVolume, String> {
    if let Some(named) = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        let pv = volumes
            .iter()
            .find(|v| v.name_any() == named)
            .ok_or_else(|| format!("volume \"{named}\" not found"))?;
        return match mismatch(pv, claim) {
            None => Ok(pv),
            Some(why) => Err(format!("volume \"{named}\" cannot be bound: {why}")),
        };
    }
    let fitting = volumes.iter().filter(|v| mismatch(v, claim).is_none());
    let mut best: Option<&PersistentVolume> = None;
    for pv in fitting {
        let key = |v: &PersistentVolume| {
            (
                prebound_to(v, claim) != Some(true),
                storage_of(v.spec.as_ref().and_then(|s| s.capacity.as_ref())).unwrap_or(f64::MAX),
                v.name_any(),
            )
        };
        if best.is_none_or(|b| key(pv).partial_cmp(&key(b)) == Some(std::cmp::Ordering::Less)) {
            best = Some(pv);
        }
    }
    best.ok_or_else(|| {
        let class = claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_default();
        if class.is_empty() {
            "no persistent volumes available for this claim and no storage class is set".into()
        } else {
            format!("no persistent volumes available for this claim of storage class \"{class}\"")
        }
    })
}

/// Binds an unbound claim of a class without a provisioner here; requeues while none fits.
pub(crate) async fn bind(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
) -> Result<Action, kube::Error> {
    let ns = claim.namespace().unwrap_or_default();
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let all = volumes.list(&ListParams::default()).await?.items;
    let bound_to = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty());
    // Already bound both ways (or the claim half-way): finish the statuses.
    if let Some(name) = &bound_to
        && let Some(pv) = all.iter().find(|v| &v.name_any() == name)
        && prebound_to(pv, claim) == Some(true)
        && pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.uid.as_deref())
            == claim.uid().as_deref()
    {
        crate::persistentvolume::finish_binding(&claims, &volumes, claim, pv).await?;
        return Ok(Action::await_change());
    }
    let pv = match best_match(claim, &all) {
        Ok(pv) => pv,
        Err(why) => {
            // Said once per reason (the claim is looked at again every few seconds).
            let said = claim.annotations().get(NOTED).is_some_and(|n| n == &why);
            if !said {
                Recorder::new(ctx.client.clone(), "persistentvolume-controller")
                    .publish(claim, EventType::Normal, "FailedBinding", why.clone())
                    .await;
                let note = json!({"metadata": {"annotations": {NOTED: why}}});
                claims
                    .patch(
                        &claim.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(note),
                    )
                    .await?;
            }
            return Ok(Action::requeue(RETRY));
        }
    };
    let pv_name = pv.name_any();
    // The volume first (kube's order): its claimRef is the reservation; then the claim names it.
    let reserve = json!({
        "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
        "spec": {"claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": ns,
            "name": claim.name_any(),
            "uid": claim.uid().unwrap_or_default(),
            "resourceVersion": claim.resource_version().unwrap_or_default(),
        }},
    });
    let pv = volumes
        .patch(&pv_name, &PatchParams::default(), &Patch::Merge(reserve))
        .await?;
    let mut annotations = json!({"pv.kubernetes.io/bind-completed": "yes", NOTED: null});
    if bound_to.is_none() {
        annotations["pv.kubernetes.io/bound-by-controller"] = json!("yes");
    }
    let claim = claims
        .patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": annotations}, "spec": {"volumeName": pv_name}}),
            ),
        )
        .await?;
    crate::persistentvolume::finish_binding(&claims, &volumes, &claim, &pv).await?;
    tracing::info!(claim = %format!("{ns}/{}", claim.name_any()), volume = %pv_name, "bound a claim to an existing volume");
    Ok(Action::await_change())
}

/// The last binding failure told about a claim (so that the event is not repeated every retry).
const NOTED: &str = "capstan.io/binding-failure";

/// The finalizer the API server puts on every volume (StorageObjectInUseProtection).
const PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// Whether a claim is bound to `pv`: it is `Bound` and the claim its `claimRef` names still exists
/// with that uid.
async fn in_use(ctx: &Context, pv: &PersistentVolume) -> Result<bool, kube::Error> {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        return Ok(false);
    };
    if phase(pv) != "Bound" {
        return Ok(false);
    }
    claim_exists(ctx, &r).await
}

/// Whether the claim a volume's `claimRef` names still exists with the uid it recorded.
async fn claim_exists(
    ctx: &Context,
    r: &k8s_openapi::api::core::v1::ObjectReference,
) -> Result<bool, kube::Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(
        ctx.client.clone(),
        r.namespace.as_deref().unwrap_or_default(),
    );
    let claim = claims
        .get_opt(r.name.as_deref().unwrap_or_default())
        .await?;
    Ok(claim.is_some_and(|c| c.uid() == r.uid))
}

/// kube's pv-protection controller: a deleted volume keeps its finalizer while a claim is bound to
/// it (it reads `Terminating`), and loses it once none is.
async fn release_protection(
    ctx: &Context,
    volumes: &Api<PersistentVolume>,
    pv: &PersistentVolume,
) -> Result<(), kube::Error> {
    if !pv.finalizers().iter().any(|f| f == PROTECTION_FINALIZER) || in_use(ctx, pv).await? {
        return Ok(());
    }
    let rest: Vec<&String> = pv
        .finalizers()
        .iter()
        .filter(|f| *f != PROTECTION_FINALIZER)
        .collect();
    // The resourceVersion makes it a compare-and-swap: a finalizer added meanwhile is not lost.
    let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": pv.resource_version()}});
    match volumes
        .patch(
            &pv.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Volumes nobody provisioned here: unbound ones become `Available`, bound ones whose claim is gone
/// `Released`. Deleted volumes (any) lose their protection finalizer once no claim is bound.
pub(crate) async fn sync_static_volumes(
    ctx: &Context,
    volumes: &Api<PersistentVolume>,
) -> Result<(), kube::Error> {
    for pv in volumes.list(&ListParams::default()).await?.items {
        if pv.metadata.deletion_timestamp.is_some() {
            release_protection(ctx, volumes, &pv).await?;
            continue;
        }
        if pv
            .annotations()
            .contains_key("pv.kubernetes.io/provisioned-by")
        {
            continue;
        }
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.clone());
        let wanted = match &claim_ref {
            None => "Available",
            // Reserved by an administrator for a claim that has not bound yet.
            Some(r) if r.uid.as_deref().is_none_or(str::is_empty) => "Available",
            Some(r) => {
                if claim_exists(ctx, r).await? {
                    continue;
                }
                "Released"
            }
        };
        if phase(&pv) != wanted && !(wanted == "Available" && phase(&pv) == "Released") {
            volumes
                .patch_status(
                    &pv.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": wanted}})),
                )
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(
        name: &str,
        class: &str,
        size: &str,
        modes: &[&str],
        labels: serde_json::Value,
    ) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"storageClassName": class, "capacity": {"storage": size}, "accessModes": modes,
                     "hostPath": {"path": format!("/mnt/{name}")}},
            "status": {"phase": "Available"},
        }))
        .expect("pv")
    }

    fn claim(class: Option<&str>, size: &str, modes: &[&str]) -> PersistentVolumeClaim {
        let mut spec = json!({"accessModes": modes, "resources": {"requests": {"storage": size}}});
        if let Some(class) = class {
            spec["storageClassName"] = json!(class);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "app", "uid": "u1"},
            "spec": spec,
        }))
        .expect("claim")
    }

    #[test]
    fn quantities_compare_in_bytes() {
        assert_eq!(bytes("1Gi"), Some(1073741824.0));
        assert_eq!(bytes("500M"), Some(5e8));
        assert_eq!(bytes("1e3"), Some(1000.0));
        assert!(bytes("10Gi").expect("q") > bytes("10G").expect("q"));
        assert_eq!(bytes("ten"), None);
    }

    #[test]
    fn the_smallest_fitting_volume_of_the_class_wins() {
        let volumes = [
            pv("big", "manual", "10Gi", &["ReadWriteOnce"], json!({})),
            pv(
                "small",
                "manual",
                "2Gi",
                &["ReadWriteOnce", "ReadOnlyMany"],
                json!({}),
            ),
            pv("tiny", "manual", "500Mi", &["ReadWriteOnce"], json!({})),
            pv("other-class", "fast", "1Gi", &["ReadWriteOnce"], json!({})),
        ];
        let c = claim(Some("manual"), "1Gi", &["ReadWriteOnce"]);
        assert_eq!(best_match(&c, &volumes).expect("match").name_any(), "small");
        let c = claim(Some("manual"), "1Gi", &["ReadWriteMany"]);
        assert_eq!(
            best_match(&c, &volumes).expect_err("no RWX"),
            "no persistent volumes available for this claim of storage class \"manual\""
        );
        let c = claim(Some(""), "1Gi", &["ReadWriteOnce"]);
        assert_eq!(
            best_match(&c, &volumes).expect_err("no classless volume"),
            "no persistent volumes available for this claim and no storage class is set"
        );
    }

    #[test]
    fn selectors_names_and_reservations_are_honoured() {
        let mut reserved = pv("reserved", "manual", "5Gi", &["ReadWriteOnce"], json!({}));
        reserved.spec.as_mut().expect("spec").claim_ref =
            Some(serde_json::from_value(json!({"namespace": "app", "name": "data"})).expect("ref"));
        let mut taken = pv(
            "taken",
            "manual",
            "1Gi",
            &["ReadWriteOnce"],
            json!({"tier": "gold"}),
        );
        taken.spec.as_mut().expect("spec").claim_ref = Some(
            serde_json::from_value(json!({"namespace": "app", "name": "other", "uid": "u2"}))
                .expect("ref"),
        );
        let gold = pv(
            "gold",
            "manual",
            "8Gi",
            &["ReadWriteOnce"],
            json!({"tier": "gold"}),
        );
        let volumes = [reserved, taken, gold];
        // A volume reserved for the claim wins over a smaller free one.
        let c = claim(Some("manual"), "1Gi", &["ReadWriteOnce"]);
        assert_eq!(
            best_match(&c, &volumes).expect("match").name_any(),
            "reserved"
        );
        // The selector narrows to labelled volumes; one bound elsewhere is never taken.
        let mut c = claim(Some("manual"), "1Gi", &["ReadWriteOnce"]);
        c.spec.as_mut().expect("spec").selector = Some(
            serde_json::from_value(json!({"matchLabels": {"tier": "gold"}})).expect("selector"),
        );
        assert_eq!(best_match(&c, &volumes).expect("match").name_any(), "gold");
        // A claim naming its volume gets it, or a reason.
        let mut c = claim(Some("manual"), "1Gi", &["ReadWriteOnce"]);
        c.spec.as_mut().expect("spec").volume_name = Some("taken".into());
        assert_eq!(
            best_match(&c, &volumes).expect_err("taken"),
            "volume \"taken\" cannot be bound: already bound to a different claim"
        );
    }
}
