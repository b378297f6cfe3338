//! What every cluster has from its first second: the `default`, `kube-system`, `kube-public` and
//! `kube-node-lease` namespaces, the `system-node-critical` and `system-cluster-critical`
//! PriorityClasses, the default `local-path` StorageClass, the `kubernetes` Service (first service IP,
//! port 443) with Endpoints and an EndpointSlice that point at this API server, and the default RBAC
//! roles and bindings (`rbac_policy.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use capstan_store::StoreError;
use serde_json::{Value, json};

use crate::rest::{create_object, stored, system_request};
use crate::{ApiState, User};

const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the built-in objects (idempotently) and marks the server ready.
pub(crate) async fn run(state: Arc<ApiState>) {
    let mut ready = state.ready.clone();
    if ready.wait_for(|r| *r).await.is_err() {
        return;
    }
    let mut delay = Duration::from_millis(100);
    loop {
        match ensure(&state).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "bootstrap objects not created yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    state.booted.store(true, Ordering::SeqCst);
    tracing::info!("API server ready");
}

async fn create_if_absent(
    state: &Arc<ApiState>,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    object: Value,
) -> Result<(), String> {
    let resource =
        capstan_api::find(group, "v1", plural).ok_or_else(|| format!("{plural} not registered"))?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if stored(state, resource, ns, &name).await.is_ok() {
        return Ok(());
    }
    let user = User::new("system:apiserver", ["system:masters"]);
    let req = system_request(state, &user, Bytes::new());
    match create_object(&req, resource, ns, object).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

async fn ensure(state: &Arc<ApiState>) -> Result<(), String> {
    for ns in NAMESPACES {
        create_if_absent(
            state,
            "",
            "namespaces",
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    for class in capstan_api::SYSTEM_PRIORITY_CLASSES {
        create_if_absent(
            state,
            "scheduling.k8s.io",
            "priorityclasses",
            None,
            json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": class.name}, "value": class.value,
                "description": class.description,
            }),
        )
        .await?;
    }
    // k3s's default class: node-local directories provisioned on first use (the controller manager's
    // local-path provisioner), so claims without a class work out of the box.
    create_if_absent(
        state,
        "storage.k8s.io",
        "storageclasses",
        None,
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        }),
    )
    .await?;
    let ip = state.services.first();
    let port = state.advertise.port();
    create_if_absent(state, "", "services", Some("default"), json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip.to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
    })).await?;
    let address = state.advertise.ip().to_string();
    upsert(state, "", "endpoints", Some("default"), json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    }), &["subsets"]).await?;
    upsert(state, "discovery.k8s.io", "endpointslices", Some("default"), json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }), &["endpoints"]).await?;
    // RBAC: the default roles and bindings (kube-apiserver's "rbac/bootstrap-roles").
    for (plural, ns, object) in crate::rbac_policy::objects() {
        let fields: &[&str] = if plural.ends_with("bindings") {
            &["roleRef", "subjects"]
        } else {
            &["rules", "aggregationRule"]
        };
        upsert(
            state,
            "rbac.authorization.k8s.io",
            plural,
            ns,
            object,
            fields,
        )
        .await?;
    }
    Ok(())
}

/// Creates the object, or rewrites `fields` when they differ from the stored object's (the
/// server's address changed; a newer bootstrap policy). An object annotated
/// `rbac.authorization.kubernetes.io/autoupdate: "false"` is left as its owner changed it.
async fn upsert(
    state: &Arc<ApiState>,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    object: Value,
    fields: &[&str],
) -> Result<(), String> {
    let resource =
        capstan_api::find(group, "v1", plural).ok_or_else(|| format!("{plural} not registered"))?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match stored(state, resource, ns, &name).await {
        Err(_) => create_if_absent(state, group, plural, ns, object).await,
        Ok((mut current, revision)) => {
            let pinned = current["metadata"]["annotations"][crate::rbac_policy::AUTOUPDATE]
                .as_str()
                == Some("false");
            if pinned || fields.iter().all(|f| current[*f] == object[*f]) {
                return Ok(());
            }
            for field in fields {
                current[*field] = object[*field].clone();
            }
            if let Some(meta) = current["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            let bytes = Bytes::from(serde_json::to_vec(&current).map_err(|e| e.to_string())?);
            match state
                .store
                .update(&resource.key(ns, &name), bytes, revision)
                .await
            {
                Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}
