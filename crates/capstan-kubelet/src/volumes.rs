//! Pod volumes on the node's disk: emptyDir, configMap, secret, hostPath, downwardAPI and projected
//! (configMap/secret/downwardAPI sources), each a directory under `pods/<uid>/volumes/<name>` that is
//! bind-mounted into the containers; and persistentVolumeClaims bound to node-local volumes
//! (`hostPath` or `local` PersistentVolumes, which the `local-path` class provisions). Errors read as
//! the kubelet's `FailedMount` messages.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, ObjectFieldSelector, PersistentVolume,
    PersistentVolumeClaim, Pod, ResourceFieldSelector, Secret,
};
use kube::Api;

use crate::Kubelet;

/// Files of a volume: relative path -> (content, mode).
type Files = BTreeMap<String, (Vec<u8>, Option<i32>)>;

/// Host paths of a pod's volumes, by volume name.
pub(crate) type VolumePaths = HashMap<String, PathBuf>;

pub(crate) fn pod_dir(k: &Kubelet, uid: &str) -> PathBuf {
    k.config.pods_dir().join(uid)
}

/// Prepares every volume of `pod`; the error is the first volume that cannot be set up.
pub(crate) async fn prepare(k: &Kubelet, pod: &Pod, uid: &str) -> Result<VolumePaths, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = HashMap::new();
    let Some(spec) = &pod.spec else {
        return Ok(out);
    };
    for vol in spec.volumes.iter().flatten() {
        let dir = pod_dir(k, uid).join("volumes").join(&vol.name);
        let fail =
            |e: String| format!("MountVolume.SetUp failed for volume \"{}\" : {e}", vol.name);
        let path = if let Some(hp) = &vol.host_path {
            host_path(&hp.path, hp.type_.as_deref().unwrap_or("")).map_err(fail)?
        } else if vol.empty_dir.is_some() {
            mkdir(&dir).map_err(fail)?;
            dir
        } else if let Some(cm) = &vol.config_map {
            let files = config_map_files(
                k,
                &ns,
                &cm.name,
                cm.items.as_deref(),
                cm.optional.unwrap_or(false),
            )
            .await
            .map_err(fail)?;
            write_files(&dir, &files, cm.default_mode.unwrap_or(0o644)).map_err(fail)?;
            dir
        } else if let Some(s) = &vol.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let files = secret_files(
                k,
                &ns,
                &name,
                s.items.as_deref(),
                s.optional.unwrap_or(false),
            )
            .await
            .map_err(fail)?;
            write_files(&dir, &files, s.default_mode.unwrap_or(0o644)).map_err(fail)?;
            dir
        } else if let Some(d) = &vol.downward_api {
            let files =
                downward_files(pod, d.items.as_deref().unwrap_or_default()).map_err(fail)?;
            write_files(&dir, &files, d.default_mode.unwrap_or(0o644)).map_err(fail)?;
            dir
        } else if let Some(p) = &vol.projected {
            let mut files = BTreeMap::new();
            for source in p.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    files.extend(
                        config_map_files(
                            k,
                            &ns,
                            &cm.name,
                            cm.items.as_deref(),
                            cm.optional.unwrap_or(false),
                        )
                        .await
                        .map_err(fail)?,
                    );
                }
                if let Some(s) = &source.secret {
                    files.extend(
                        secret_files(
                            k,
                            &ns,
                            &s.name,
                            s.items.as_deref(),
                            s.optional.unwrap_or(false),
                        )
                        .await
                        .map_err(fail)?,
                    );
                }
                if let Some(d) = &source.downward_api {
                    files.extend(
                        downward_files(pod, d.items.as_deref().unwrap_or_default())
                            .map_err(fail)?,
                    );
                }
            }
            write_files(&dir, &files, p.default_mode.unwrap_or(0o644)).map_err(fail)?;
            dir
        } else if let Some(claim) = &vol.persistent_volume_claim {
            claim_path(k, &ns, &claim.claim_name).await.map_err(fail)?
        } else {
            // Volume types that need storage plugins (CSI, NFS...) are not supported by this node.
            return Err(fail("volume type not supported by this node".into()));
        };
        out.insert(vol.name.clone(), path);
    }
    Ok(out)
}

/// The host directory of the volume bound to claim `ns/name`: only node-local volumes (`hostPath`,
/// `local`) whose node affinity admits this node can be mounted here.
async fn claim_path(k: &Kubelet, ns: &str, name: &str) -> Result<PathBuf, String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(k.client.clone(), ns);
    let claim = claims
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || volume.is_empty() {
        // The kubelet's words (volume manager's getPVCExtractPV).
        return Err(format!(
            "PVC {ns}/{name} has non-bound phase (\"{phase}\") or empty pvc.Spec.VolumeName (\"{volume}\")"
        ));
    }
    let pv = Api::<PersistentVolume>::all(k.client.clone())
        .get_opt(&volume)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolume \"{volume}\" not found"))?;
    let spec = pv.spec.unwrap_or_default();
    if !node_affinity_admits(spec.node_affinity.as_ref(), &k.config.node_name) {
        return Err(format!(
            "volume \"{volume}\" has a node affinity that does not match node \"{}\"",
            k.config.node_name
        ));
    }
    if let Some(hp) = &spec.host_path {
        host_path(&hp.path, hp.type_.as_deref().unwrap_or(""))
    } else if let Some(local) = &spec.local {
        host_path(&local.path, "Directory")
    } else {
        Err(format!(
            "volume \"{volume}\" is not a node-local volume (hostPath or local); this node has no plugin for it"
        ))
    }
}

/// Removes the directories of this node's `local-path` volumes whose PersistentVolume is gone (the
/// provisioner deletes a released volume with reclaim policy `Delete`; the data goes with it here,
/// as k3s's helper pod removes it there). Only a definite NotFound removes anything.
pub(crate) async fn reclaim_local_volumes(k: &Kubelet) {
    let Ok(entries) = std::fs::read_dir(k.config.storage_dir()) else {
        return;
    };
    let volumes: Api<PersistentVolume> = Api::all(k.client.clone());
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(dir_name) = file_name.to_str() else {
            continue;
        };
        // `<pv>_<namespace>_<claim>`, the provisioner's naming.
        let Some((volume, _)) = dir_name.split_once('_') else {
            continue;
        };
        if !volume.starts_with("pvc-") {
            continue;
        }
        match volumes.get_opt(volume).await {
            Ok(None) => {
                tracing::info!(%volume, path = %entry.path().display(), "removing the data of a deleted volume");
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(%volume, error = %e, "could not remove a deleted volume's data");
                }
            }
            Ok(Some(_)) => {}
            Err(e) => {
                tracing::debug!(%volume, error = %e, "volume lookup failed; keeping its data")
            }
        }
    }
}

/// Whether a volume's required node affinity admits `node` by its `kubernetes.io/hostname`, the
/// label node-local volumes are pinned with (terms on other keys are not checked here; the
/// scheduler does that).
fn node_affinity_admits(
    affinity: Option<&k8s_openapi::api::core::v1::VolumeNodeAffinity>,
    node: &str,
) -> bool {
    let Some(terms) = affinity
        .and_then(|a| a.required.as_ref())
        .map(|r| &r.node_selector_terms)
    else {
        return true;
    };
    terms.iter().any(|term| {
        term.match_expressions.iter().flatten().all(|e| {
            e.key != "kubernetes.io/hostname"
                || match e.operator.as_str() {
                    "In" => e.values.iter().flatten().any(|v| v == node),
                    "NotIn" => !e.values.iter().flatten().any(|v| v == node),
                    _ => true,
                }
        })
    })
}

fn mkdir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

fn host_path(path: &str, type_: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(path);
    let meta = std::fs::metadata(&p);
    match type_ {
        "DirectoryOrCreate" if meta.is_err() => {
            std::fs::create_dir_all(&p).map_err(|e| format!("{path}: {e}"))?;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        }
        "Directory" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => {
            return Err(format!(
                "hostPath type check failed: {path} is not a directory"
            ));
        }
        "FileOrCreate" if meta.is_err() => {
            if let Some(parent) = p.parent() {
                mkdir(parent)?;
            }
            std::fs::write(&p, b"").map_err(|e| format!("{path}: {e}"))?;
        }
        "File" if !meta.as_ref().is_ok_and(|m| m.is_file()) => {
            return Err(format!("hostPath type check failed: {path} is not a file"));
        }
        "Socket" | "CharDevice" | "BlockDevice" if meta.is_err() => {
            return Err(format!("hostPath type check failed: {path} does not exist"));
        }
        _ => {}
    }
    Ok(p)
}

fn select(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    kind: &str,
    name: &str,
) -> Result<Files, String> {
    match items {
        None => Ok(data.into_iter().map(|(k, v)| (k, (v, None))).collect()),
        Some(items) => items
            .iter()
            .map(|item| {
                let v = data.get(&item.key).cloned().ok_or_else(|| {
                    format!(
                        "configuration error: {kind} \"{name}\" has no key \"{}\"",
                        item.key
                    )
                })?;
                Ok((item.path.clone(), (v, item.mode)))
            })
            .collect(),
    }
}

async fn config_map_files(
    k: &Kubelet,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<Files, String> {
    let api: Api<ConfigMap> = Api::namespaced(k.client.clone(), ns);
    match api.get_opt(name).await.map_err(|e| e.to_string())? {
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("configmap \"{name}\" not found")),
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            data.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            select(data, items, "configmap", name)
        }
    }
}

async fn secret_files(
    k: &Kubelet,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<Files, String> {
    let api: Api<Secret> = Api::namespaced(k.client.clone(), ns);
    match api.get_opt(name).await.map_err(|e| e.to_string())? {
        None if optional => Ok(BTreeMap::new()),
        None => Err(format!("secret \"{name}\" not found")),
        Some(s) => {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            data.extend(
                s.string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            select(data, items, "secret", name)
        }
    }
}

fn downward_files(pod: &Pod, items: &[DownwardAPIVolumeFile]) -> Result<Files, String> {
    items
        .iter()
        .map(|item| {
            let value = if let Some(f) = &item.field_ref {
                field_value(pod, f)?
            } else if let Some(r) = &item.resource_field_ref {
                resource_value(pod, r)?
            } else {
                String::new()
            };
            Ok((item.path.clone(), (value.into_bytes(), item.mode)))
        })
        .collect()
}

fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `fieldRef` value, as env vars and downward API files see it.
pub(crate) fn field_value(pod: &Pod, f: &ObjectFieldSelector) -> Result<String, String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let path = f.field_path.as_str();
    let bracket = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(m.labels.as_ref()),
        "metadata.annotations" => format_map(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => status
            .and_then(|s| s.host_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        _ => {
            if let Some(key) = bracket("metadata.labels") {
                m.labels
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = bracket("metadata.annotations") {
                m.annotations
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    })
}

/// A `resourceFieldRef` value (limits fall back to the node's allocatable as the kubelet does; here: requests or 0).
pub(crate) fn resource_value(pod: &Pod, r: &ResourceFieldSelector) -> Result<String, String> {
    let container = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .find(|c| r.container_name.as_deref().is_none_or(|n| n == c.name))
        .ok_or_else(|| format!("container {:?} not found", r.container_name))?;
    let res = container.resources.as_ref();
    let (kind, name) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource: {}", r.resource))?;
    let map = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resource: {}", r.resource)),
    };
    let q = map.and_then(|m| m.get(name)).map(|q| q.0.clone());
    let divisor = r.divisor.as_ref().map(|d| d.0.as_str()).unwrap_or("1");
    let Some(q) = q else {
        return Ok(if name == "cpu" {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .to_string()
        } else {
            crate::node::meminfo("MemTotal").unwrap_or(0).to_string()
        });
    };
    let value = crate::status::parse_quantity(&q).ok_or_else(|| format!("bad quantity {q}"))?;
    let div = crate::status::parse_quantity(divisor)
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    Ok(format!("{}", (value / div).ceil() as i64))
}

/// Writes `files` (relative paths) under `dir` and removes files that are no longer there.
fn write_files(dir: &Path, files: &Files, default_mode: i32) -> Result<(), String> {
    mkdir(dir)?;
    for (rel, (data, mode)) in files {
        if rel.split('/').any(|seg| seg == ".." || seg.is_empty()) {
            return Err(format!("invalid path {rel:?}"));
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            mkdir(parent)?;
        }
        if std::fs::read(&path).ok().as_deref() != Some(data.as_slice()) {
            std::fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let mode = u32::try_from(mode.unwrap_or(default_mode)).unwrap_or(0o644) & 0o7777;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
    }
    // Keys removed from the source disappear from the volume.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let known = files
                .keys()
                .any(|k| k == &name || k.starts_with(&format!("{name}/")));
            if !known {
                let p = entry.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
    Ok(())
}

/// Removes a pod's volume directories (never hostPaths: they are not under the pod dir).
pub(crate) fn cleanup(k: &Kubelet, uid: &str) {
    let dir = pod_dir(k, uid);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot remove pod directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use kube::api::ObjectMeta;

    #[test]
    fn local_volumes_mount_only_on_their_node() {
        let pinned: k8s_openapi::api::core::v1::VolumeNodeAffinity =
            serde_json::from_value(serde_json::json!({"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}
            ]}}))
            .expect("affinity");
        assert!(node_affinity_admits(Some(&pinned), "n1"));
        assert!(!node_affinity_admits(Some(&pinned), "n2"));
        assert!(node_affinity_admits(None, "n2"));
        // Two terms: either admits.
        let either: k8s_openapi::api::core::v1::VolumeNodeAffinity =
            serde_json::from_value(serde_json::json!({"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]},
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}
            ]}}))
            .expect("affinity");
        assert!(node_affinity_admits(Some(&either), "n2"));
        assert!(!node_affinity_admits(Some(&either), "n3"));
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some(
                    [
                        ("app".to_string(), "web".to_string()),
                        ("tier".to_string(), "a b".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn field_refs_read_metadata_and_spec() {
        let f = |p: &str| {
            field_value(
                &pod(),
                &ObjectFieldSelector {
                    field_path: p.into(),
                    api_version: None,
                },
            )
        };
        assert_eq!(f("metadata.name").as_deref(), Ok("p"));
        assert_eq!(f("spec.nodeName").as_deref(), Ok("n1"));
        assert_eq!(f("metadata.labels['app']").as_deref(), Ok("web"));
        assert_eq!(
            f("metadata.labels").as_deref(),
            Ok("app=\"web\"\ntier=\"a b\"")
        );
        assert!(f("spec.bogus").is_err());
    }

    #[test]
    fn written_files_follow_the_source_and_refuse_escapes() {
        let dir = std::env::temp_dir().join(format!("capstan-vol-{}", std::process::id()));
        let mut files = BTreeMap::new();
        files.insert("a".to_string(), (b"1".to_vec(), None));
        files.insert("sub/b".to_string(), (b"2".to_vec(), Some(0o600)));
        write_files(&dir, &files, 0o644).expect("write");
        assert_eq!(std::fs::read(dir.join("sub/b")).expect("b"), b"2");
        files.remove("a");
        write_files(&dir, &files, 0o644).expect("rewrite");
        assert!(!dir.join("a").exists());
        files.insert("../x".to_string(), (b"3".to_vec(), None));
        assert!(write_files(&dir, &files, 0o644).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
