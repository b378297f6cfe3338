//! Serving custom resources (kube-apiserver's apiextensions controllers, in-process): every
//! CustomResourceDefinition in the watch cache gets its resources registered with `capstan-api` and
//! cached, its status set (`NamesAccepted`, `Established`, `acceptedNames`, `storedVersions`); a
//! definition being deleted first has its objects deleted, then stops being served and goes.
//!
//! Writes go straight to the store with compare-and-swap, as these are the server's own status
//! updates; a lost race is retried on the next pass.

use std::sync::Arc;
use std::time::Duration;

use capstan_api::ResourceInfo;
use capstan_api::custom::CLEANUP_FINALIZER;
use capstan_store::{ListOptions, StoreError};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::ApiState;
use crate::objects::now_rfc3339;

/// Runs until the process ends (the caller selects on shutdown).
pub(crate) async fn run(state: Arc<ApiState>) {
    let Some(crds) = capstan_api::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return;
    };
    let mut ready = state.ready.clone();
    if ready.wait_for(|r| *r).await.is_err() {
        return;
    }
    loop {
        let Ok(start) = state.cache.watch(crds, None) else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut live = start.live;
        let mut again = reconcile(&state, crds).await;
        loop {
            // Something left to finish (objects still being deleted, a lost write): look again soon.
            let wait = if again {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(3600)
            };
            match tokio::time::timeout(wait, live.recv()).await {
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) | Err(_) => {
                    while live.try_recv().is_ok() {}
                    again = reconcile(&state, crds).await;
                }
                // The cache relisted: watch again.
                Ok(Err(RecvError::Closed)) => break,
            }
        }
    }
}

/// One pass over every definition; true when some work is left for a later pass.
async fn reconcile(state: &ApiState, crds: &'static ResourceInfo) -> bool {
    let (objects, _, _) = state.cache.list(crds, None, None, |_| true, None);
    let mut again = false;
    let mut present = Vec::new();
    for cached in objects {
        let crd = cached.value();
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        present.push(name.clone());
        let outcome = if crd["metadata"]["deletionTimestamp"].is_string() {
            finish_deletion(state, crds, &name, &crd).await
        } else {
            serve(state, crds, &name, &crd).await
        };
        match outcome {
            Ok(done) => again |= !done,
            Err(e) => {
                tracing::warn!(definition = name, error = %e, "custom resource definition");
                again = true;
            }
        }
    }
    // Definitions gone from the store (deleted by another server, or with no cleanup finalizer).
    for resource in capstan_api::custom::registered() {
        if let Some(custom) = resource.custom
            && !present.contains(&custom.definition)
        {
            stop(state, &custom.definition);
        }
    }
    again
}

fn stop(state: &ApiState, definition: &str) {
    for resource in capstan_api::custom::unregister(definition) {
        state.cache.stop_custom(resource.storage);
    }
}

/// Registers the definition's resources and sets its status. Ok(true) when nothing is left to do.
async fn serve(
    state: &ApiState,
    crds: &'static ResourceInfo,
    name: &str,
    crd: &Value,
) -> Result<bool, StoreError> {
    let resources = match capstan_api::custom::resources_of(crd) {
        Ok(resources) => resources,
        Err(message) => {
            tracing::warn!(definition = name, message, "definition not served");
            return Ok(true);
        }
    };
    let served = capstan_api::custom::register(name, resources);
    let storage_version = crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["storage"].as_bool() == Some(true)))
        .and_then(|v| v["name"].as_str())
        .unwrap_or_default()
        .to_owned();
    if let Some(storage) = served
        .iter()
        .find(|r| r.version == storage_version)
        .or(served.first())
    {
        state.cache.serve_custom(storage);
    }
    let status = desired_status(crd, &storage_version);
    if crd["status"] == status {
        return Ok(true);
    }
    update(state, crds, name, |object| {
        object["status"] = desired_status(object, &storage_version);
        true
    })
    .await?;
    Ok(true)
}

/// The status a served definition has: its names accepted and established, as kube's naming and
/// establishing controllers leave it. Condition times are kept while a condition holds.
fn desired_status(crd: &Value, storage_version: &str) -> Value {
    let names = &crd["spec"]["names"];
    let kind = names["kind"].as_str().unwrap_or_default();
    let mut accepted = names.clone();
    if accepted["singular"].as_str().unwrap_or_default().is_empty() {
        accepted["singular"] = json!(kind.to_ascii_lowercase());
    }
    if accepted["listKind"].as_str().unwrap_or_default().is_empty() {
        accepted["listKind"] = json!(format!("{kind}List"));
    }
    let old = &crd["status"];
    let condition = |type_: &str, reason: &str, message: &str| {
        let since = old["conditions"]
            .as_array()
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == type_ && c["status"] == "True")
            })
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(now_rfc3339);
        json!({"type": type_, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message})
    };
    let mut stored: Vec<Value> = old["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !storage_version.is_empty() && !stored.contains(&json!(storage_version)) {
        stored.push(json!(storage_version));
    }
    json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    })
}

/// Deletes the definition's objects; once none is left, stops serving it and lets it go.
/// Ok(true) when the definition is gone.
async fn finish_deletion(
    state: &ApiState,
    crds: &'static ResourceInfo,
    name: &str,
    crd: &Value,
) -> Result<bool, StoreError> {
    let has_cleanup = crd["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.contains(&json!(CLEANUP_FINALIZER)));
    if !has_cleanup {
        // Other finalizers are someone else's; serving stops when the definition is gone.
        return Ok(true);
    }
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
    let prefix = format!("/registry/{group}/{plural}/");
    let page = state
        .store
        .list(
            &prefix,
            ListOptions {
                limit: Some(500),
                continue_token: None,
                revision: None,
            },
        )
        .await?;
    if !page.items.is_empty() {
        if !crd["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Terminating"))
        {
            update(state, crds, name, |object| {
                let terminating = json!({"type": "Terminating", "status": "True",
                    "lastTransitionTime": now_rfc3339(), "reason": "InstanceDeletionInProgress",
                    "message": "CustomResource deletion is in progress"});
                match object["status"]["conditions"].as_array_mut() {
                    Some(conditions) => conditions.push(terminating),
                    None => object["status"]["conditions"] = json!([terminating]),
                }
                true
            })
            .await?;
        }
        for kv in page.items {
            delete_object(state, &kv).await?;
        }
        return Ok(false);
    }
    stop(state, name);
    // The last finalizer gone from an object being deleted: the object goes.
    let key = crds.key(None, name);
    let Some(kv) = state.store.get(&key, None).await? else {
        return Ok(true);
    };
    let Ok(mut object) = serde_json::from_slice::<Value>(&kv.value) else {
        return Ok(true);
    };
    let finalizers: Vec<Value> = object["metadata"]["finalizers"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| f.as_str() != Some(CLEANUP_FINALIZER))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if finalizers.is_empty() {
        state.store.delete(&key, Some(kv.mod_revision)).await?;
    } else {
        object["metadata"]["finalizers"] = Value::Array(finalizers);
        let bytes = serde_json::to_vec(&object).unwrap_or_default();
        state
            .store
            .update(&key, bytes.into(), kv.mod_revision)
            .await?;
    }
    Ok(true)
}

/// Deletes one custom object as a DELETE without options would: at once without finalizers, else
/// marked for deletion, left to whoever owns the finalizers.
async fn delete_object(state: &ApiState, kv: &capstan_store::KeyValue) -> Result<(), StoreError> {
    let Ok(mut object) = serde_json::from_slice::<Value>(&kv.value) else {
        state.store.delete(&kv.key, Some(kv.mod_revision)).await?;
        return Ok(());
    };
    let finalized = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if !finalized {
        return match state.store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        };
    }
    if object["metadata"]["deletionTimestamp"].is_string() {
        return Ok(());
    }
    object["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
    object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    let bytes = serde_json::to_vec(&object).unwrap_or_default();
    match state
        .store
        .update(&kv.key, bytes.into(), kv.mod_revision)
        .await
    {
        Ok(_) | Err(StoreError::NotFound { .. }) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Read-modify-write of a definition in the store; `change` returns false to write nothing.
async fn update(
    state: &ApiState,
    crds: &'static ResourceInfo,
    name: &str,
    change: impl Fn(&mut Value) -> bool,
) -> Result<(), StoreError> {
    let key = crds.key(None, name);
    let Some(kv) = state.store.get(&key, None).await? else {
        return Ok(());
    };
    let Ok(mut object) = serde_json::from_slice::<Value>(&kv.value) else {
        return Ok(());
    };
    if !change(&mut object) {
        return Ok(());
    }
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&object).unwrap_or_default();
    state
        .store
        .update(&key, bytes.into(), kv.mod_revision)
        .await
        .map(|_| ())
}
