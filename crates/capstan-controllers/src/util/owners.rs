//! Controller owner references and the adopt/release half of Kubernetes' `ControllerRefManager`:
//! an orphan that matches a controller's selector is adopted, an owned object that no longer matches
//! is released. Both are merge patches guarded by the object's `resourceVersion`, so a concurrent
//! change makes the patch fail instead of clobbering it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Error, is_not_found};

/// The owner reference with `controller: true`, if any.
pub(crate) fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set), as
/// `metav1.NewControllerRef` builds it.
pub(crate) fn new_controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// How an object relates to a would-be controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Already ours and matching: keep it.
    Owned,
    /// An orphan that matches: adopt it.
    Adopt,
    /// Ours but no longer matching: release it.
    Release,
    /// Someone else's, or not ours to take.
    Ignore,
}

/// `ControllerRefManager.ClaimObject`'s decision for one object.
pub(crate) fn claim(
    owner_uid: &str,
    owner_deleting: bool,
    object: &ObjectMeta,
    selected: bool,
) -> Claim {
    match controller_ref(object) {
        Some(r) if r.uid == owner_uid => {
            if selected {
                Claim::Owned
            } else if owner_deleting {
                Claim::Ignore
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if selected && !owner_deleting && object.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

fn guarded_owner_patch(meta: &ObjectMeta, refs: Vec<OwnerReference>) -> Patch<serde_json::Value> {
    // A merge patch that carries the resourceVersion fails with 409 if the object changed meanwhile.
    Patch::Merge(json!({
        "metadata": {"resourceVersion": meta.resource_version, "ownerReferences": refs}
    }))
}

/// Adds `owner_ref` to `object`; returns the patched object, or `None` if it is gone.
pub(crate) async fn adopt<K>(
    api: &Api<K>,
    object: &K,
    owner_ref: OwnerReference,
) -> Result<Option<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let meta = object.meta();
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_ref.uid);
    refs.push(owner_ref);
    let name = meta.name.as_deref().unwrap_or_default();
    match api
        .patch(
            name,
            &PatchParams::default(),
            &guarded_owner_patch(meta, refs),
        )
        .await
    {
        Ok(o) => Ok(Some(o)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes the reference to `owner_uid` from `object`.
pub(crate) async fn release<K>(api: &Api<K>, object: &K, owner_uid: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let meta = object.meta();
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_uid);
    let name = meta.name.as_deref().unwrap_or_default();
    match api
        .patch(
            name,
            &PatchParams::default(),
            &guarded_owner_patch(meta, refs),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(owner: Option<(&str, bool)>, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            owner_references: owner.map(|(uid, controller)| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(controller),
                    ..Default::default()
                }]
            }),
            deletion_timestamp: deleting.then(super::super::now),
            ..Default::default()
        }
    }

    #[test]
    fn claim_decisions() {
        let cases = [
            (meta(Some(("me", true)), false), false, true, Claim::Owned),
            (
                meta(Some(("me", true)), false),
                false,
                false,
                Claim::Release,
            ),
            (meta(Some(("me", true)), false), true, false, Claim::Ignore),
            (
                meta(Some(("other", true)), false),
                false,
                true,
                Claim::Ignore,
            ),
            (
                meta(Some(("other", false)), false),
                false,
                true,
                Claim::Adopt,
            ),
            (meta(None, false), false, true, Claim::Adopt),
            (meta(None, false), true, true, Claim::Ignore),
            (meta(None, true), false, true, Claim::Ignore),
            (meta(None, false), false, false, Claim::Ignore),
        ];
        for (i, (object, owner_deleting, selected, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                claim("me", owner_deleting, &object, selected),
                want,
                "case {i}"
            );
        }
    }
}
