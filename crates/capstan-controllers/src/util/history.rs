//! ControllerRevisions, the snapshot history of StatefulSets and DaemonSets (Kubernetes'
//! `pkg/controller/history`): a revision's `data` is the patch
//! `{"spec":{"template":{..., "$patch":"replace"}}}` that restores the owner's pod template, its
//! `revision` number orders the history, and equal templates share one revision (re-used with a new
//! number on rollback). Pure helpers plus the list/claim/create/truncate calls.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::owners::{self, Claim};
use super::{Error, is_not_found, selector};

/// The label a StatefulSet's revisions carry with their hash.
pub(crate) const CONTROLLER_REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// FNV-1 (not 1a), 32 bits, as Go's `hash/fnv.New32` used by `HashControllerRevision`.
fn fnv32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| {
        hash.wrapping_mul(0x0100_0193) ^ u32::from(*b)
    })
}

/// The data of a revision of `template`: a patch that replaces the owner's template.
pub(crate) fn revision_data(template: Option<&PodTemplateSpec>) -> Value {
    let mut t = template
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or_else(|| json!({}));
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision restores.
pub(crate) fn revision_template(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// `HashControllerRevision`: FNV-1 over the data (and the collision count), safe-encoded.
pub(crate) fn hash_revision(data: &Value, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(count.to_string().as_bytes());
    }
    super::rollout::safe_encode(&fnv32(&bytes).to_string())
}

/// `ControllerRevisionName`: `<owner>-<hash>`, the owner part cut to keep the name valid.
pub(crate) fn revision_name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// The next revision number after `revisions`.
pub(crate) fn next_revision(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Revisions whose data equals `data` (`FindEqualRevisions`), oldest first.
pub(crate) fn equal_revisions<'a>(
    revisions: &'a [ControllerRevision],
    data: &Value,
) -> Vec<&'a ControllerRevision> {
    let mut found: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| r.data.as_ref().map(|d| &d.0) == Some(data))
        .collect();
    found.sort_by_key(|r| r.revision);
    found
}

/// A new revision of `owner` (not yet created): labels from the template plus `hash_label: hash`,
/// the owner's annotations, a controller reference.
pub(crate) fn new_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    template_labels: Option<&BTreeMap<String, String>>,
    hash_label: &str,
    hash: &str,
    data: Value,
    revision: i64,
) -> ControllerRevision {
    let meta = owner.meta();
    let mut labels = template_labels.cloned().unwrap_or_default();
    labels.insert(hash_label.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(
                meta.name.as_deref().unwrap_or_default(),
                hash,
            )),
            namespace: meta.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations.clone(),
            owner_references: Some(vec![owners::new_controller_ref(owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// The revisions `owner` controls, adopting orphans its selector matches and releasing owned ones
/// that stopped matching. Sorted by revision number.
pub(crate) async fn claim_revisions<K: Resource<DynamicType = ()>>(
    api: &Api<ControllerRevision>,
    owner: &K,
    owner_selector: Option<&LabelSelector>,
) -> Result<Vec<ControllerRevision>, Error> {
    let meta = owner.meta();
    let uid = meta.uid.clone().unwrap_or_default();
    let deleting = meta.deletion_timestamp.is_some();
    let mut owned = Vec::new();
    for rev in api.list(&ListParams::default()).await?.items {
        let selected = selector::matches(owner_selector, rev.metadata.labels.as_ref());
        match owners::claim(&uid, deleting, &rev.metadata, selected) {
            Claim::Owned => owned.push(rev),
            Claim::Adopt => {
                if let Some(r) = owners::adopt(api, &rev, owners::new_controller_ref(owner)).await?
                {
                    owned.push(r);
                }
            }
            Claim::Release => owners::release(api, &rev, &uid).await?,
            Claim::Ignore => {}
        }
    }
    owned.sort_by_key(|r| r.revision);
    Ok(owned)
}

/// Sets an existing revision's number (a rollback to an old template re-uses its revision).
pub(crate) async fn set_revision_number(
    api: &Api<ControllerRevision>,
    revision: &ControllerRevision,
    number: i64,
) -> Result<ControllerRevision, Error> {
    let name = revision.metadata.name.as_deref().unwrap_or_default();
    Ok(api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"revision": number})),
        )
        .await?)
}

/// Creates `revision`; on a name collision with different data, bumps `collision_count` and
/// returns `None` so that the caller retries with a new hash (`CreateControllerRevision`).
pub(crate) async fn create_revision(
    api: &Api<ControllerRevision>,
    revision: &ControllerRevision,
) -> Result<Option<ControllerRevision>, Error> {
    match api.create(&PostParams::default(), revision).await {
        Ok(created) => Ok(Some(created)),
        Err(e) if super::is_conflict(&e) => {
            let name = revision.metadata.name.as_deref().unwrap_or_default();
            let existing = api.get(name).await?;
            let same_owner = owners::controller_ref(&existing.metadata).map(|r| &r.uid)
                == owners::controller_ref(&revision.metadata).map(|r| &r.uid);
            if same_owner && existing.data == revision.data {
                Ok(Some(existing))
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes the oldest revisions beyond `limit` that are not `live` (in use by pods or status).
pub(crate) async fn truncate(
    api: &Api<ControllerRevision>,
    revisions: &[ControllerRevision],
    live: &[&str],
    limit: usize,
) -> Result<(), Error> {
    let history: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !live.contains(&r.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    let excess = history.len().saturating_sub(limit);
    for rev in history.into_iter().take(excess) {
        let name = rev.metadata.name.as_deref().unwrap_or_default();
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }))
        .expect("template")
    }

    #[test]
    fn fnv1_matches_reference_vectors() {
        assert_eq!(fnv32(b""), 0x811c_9dc5);
        assert_eq!(fnv32(b"a"), 0x050c_5d7e);
        assert_eq!(fnv32(b"foobar"), 0x31f0_b262);
    }

    #[test]
    fn data_round_trips_the_template_and_hashes_differ_by_template_and_collision() {
        let t = template("db:1");
        let data = revision_data(Some(&t));
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let rev = ControllerRevision {
            data: Some(RawExtension(data.clone())),
            ..Default::default()
        };
        assert_eq!(revision_template(&rev), Some(t));
        let h = hash_revision(&data, None);
        assert_eq!(h, hash_revision(&data, None));
        assert_ne!(h, hash_revision(&data, Some(1)));
        assert_ne!(
            h,
            hash_revision(&revision_data(Some(&template("db:2"))), None)
        );
        assert_eq!(revision_name("web", &h), format!("web-{h}"));
    }

    #[test]
    fn equal_revisions_and_next_number() {
        let a = revision_data(Some(&template("a")));
        let b = revision_data(Some(&template("b")));
        let revs = vec![
            ControllerRevision {
                data: Some(RawExtension(a.clone())),
                revision: 3,
                ..Default::default()
            },
            ControllerRevision {
                data: Some(RawExtension(b.clone())),
                revision: 1,
                ..Default::default()
            },
        ];
        assert_eq!(next_revision(&revs), 4);
        assert_eq!(next_revision(&[]), 1);
        let found = equal_revisions(&revs, &a);
        assert_eq!(found.iter().map(|r| r.revision).collect::<Vec<_>>(), [3]);
        assert!(equal_revisions(&revs, &revision_data(None)).is_empty());
    }
}
