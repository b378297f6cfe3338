//! Service account tokens: `serviceaccounts/<name>/token` (TokenRequest, what `kubectl create
//! token` calls) issues a signed JWT with kube-apiserver's claims, and bearer tokens of that form
//! authenticate as `system:serviceaccount:<namespace>:<name>` while the account (and the pod or
//! secret the token is bound to) still exists with the same uid.

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::objects::{self, metadata_mut};
use crate::rest::{Reply, parse_body};
use crate::{ApiState, User};

/// The issuer kube-apiserver (and k3s) name in their tokens.
pub(crate) const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Audiences this server accepts, and gives a token that asks for none (k3s's `--api-audiences`).
pub(crate) const API_AUDIENCES: &[&str] = &["https://kubernetes.default.svc.cluster.local", "k3s"];
/// `SetDefaults_TokenRequestSpec`.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
/// Kinds a token may be bound to: (kind, claim under `kubernetes.io`, plural).
const BINDABLE: &[(&str, &str, &str)] = &[("Pod", "pod", "pods"), ("Secret", "secret", "secrets")];
/// Clock skew allowed around `nbf` and `exp` (go-jose's default leeway).
const LEEWAY: i64 = 60;

fn not_found(plural: &str, name: &str) -> ApiError {
    match capstan_api::find("", "v1", plural) {
        Some(resource) => ApiError::not_found(resource, name),
        None => ApiError::internal(format!("{plural} are not registered")),
    }
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The uid of a cached object, if it exists.
fn cached_uid(state: &ApiState, plural: &str, ns: &str, name: &str) -> Option<String> {
    let resource = capstan_api::find("", "v1", plural)?;
    let object = state.cache.get(resource, &resource.key(Some(ns), name))?;
    object.value()["metadata"]["uid"]
        .as_str()
        .map(str::to_owned)
}

/// `POST .../serviceaccounts/<name>/token`.
pub(crate) fn token_request(
    state: &ApiState,
    body: &[u8],
    ns: &str,
    name: &str,
) -> ApiResult<Reply> {
    let mut request = if body.is_empty() {
        json!({})
    } else {
        parse_body(body)?
    };
    let Some(sa_uid) = cached_uid(state, "serviceaccounts", ns, name) else {
        return Err(not_found("serviceaccounts", name));
    };
    let spec = &mut request["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    let expiration = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_EXPIRATION);
    let too = if expiration < MIN_EXPIRATION {
        Some("may not specify a duration less than 10 minutes")
    } else if expiration > MAX_EXPIRATION {
        Some("may not specify a duration larger than 2^32 seconds")
    } else {
        None
    };
    if let Some(detail) = too {
        let error = capstan_api::FieldError::invalid("spec.expirationSeconds", expiration, detail);
        return Err(ApiError::invalid_request(
            "authentication.k8s.io",
            "TokenRequest",
            name,
            &[error],
        ));
    }
    let audiences: Vec<Value> = match spec["audiences"].as_array() {
        Some(given) if !given.is_empty() => given.clone(),
        _ => API_AUDIENCES.iter().map(|a| json!(a)).collect(),
    };
    let mut bound = json!({});
    let reference = &spec["boundObjectRef"];
    if reference.is_object() {
        let kind = reference["kind"].as_str().unwrap_or_default();
        let Some(&(_, claim, plural)) = BINDABLE.iter().find(|(k, _, _)| *k == kind) else {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {kind}"
            )));
        };
        let object = reference["name"].as_str().unwrap_or_default();
        let Some(uid) = cached_uid(state, plural, ns, object) else {
            return Err(not_found(plural, object));
        };
        if let Some(want) = reference["uid"].as_str().filter(|u| !u.is_empty())
            && want != uid
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        bound = json!({claim: {"name": object, "uid": uid}});
    }
    let now = now_unix();
    let exp = now + expiration;
    let mut kubernetes = json!({"namespace": ns, "serviceaccount": {"name": name, "uid": sa_uid}});
    if let (Some(k), Some(b)) = (kubernetes.as_object_mut(), bound.as_object()) {
        k.extend(b.clone());
    }
    let claims = json!({
        "aud": audiences, "exp": exp, "iat": now, "nbf": now, "iss": ISSUER,
        "jti": objects::new_uid(),
        "kubernetes.io": kubernetes,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let claims = serde_json::to_vec(&claims).map_err(|e| ApiError::internal(e.to_string()))?;
    let token = state
        .sa_signer()
        .ok_or_else(|| ApiError::internal("no service account signing key"))?
        .sign(&claims)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    spec["audiences"] = Value::Array(audiences);
    spec["expirationSeconds"] = json!(expiration);
    if !spec["boundObjectRef"].is_object() {
        spec["boundObjectRef"] = Value::Null;
    }
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    let meta = metadata_mut(&mut request);
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(ns));
    meta.insert("creationTimestamp".into(), json!(rfc3339(now)));
    request["status"] = json!({"token": token, "expirationTimestamp": rfc3339(exp)});
    Ok(Reply::json(201, &request))
}

/// The service account a bearer token stands for, if it is one of ours and still valid.
pub(crate) fn authenticate(state: &ApiState, token: &str) -> Option<User> {
    // Cheap test first: a JWT has two dots.
    if token.bytes().filter(|b| *b == b'.').count() != 2 {
        return None;
    }
    let claims = state.sa_signer()?.verify(token).ok()?;
    let claims: Value = serde_json::from_slice(&claims).ok()?;
    let now = now_unix();
    if claims["iss"] != ISSUER
        || claims["exp"].as_i64().is_none_or(|exp| exp + LEEWAY < now)
        || claims["nbf"].as_i64().is_some_and(|nbf| nbf - LEEWAY > now)
    {
        return None;
    }
    let audiences = claims["aud"].as_array()?;
    if !audiences
        .iter()
        .any(|a| a.as_str().is_some_and(|a| API_AUDIENCES.contains(&a)))
    {
        return None;
    }
    let k = &claims["kubernetes.io"];
    let ns = k["namespace"].as_str()?;
    let name = k["serviceaccount"]["name"].as_str()?;
    // A token dies with its account, and with the object it is bound to.
    if cached_uid(state, "serviceaccounts", ns, name).as_deref()
        != k["serviceaccount"]["uid"].as_str()
    {
        return None;
    }
    for (_, claim, plural) in BINDABLE {
        if let Some(bound) = k.get(*claim) {
            let object = bound["name"].as_str()?;
            if cached_uid(state, plural, ns, object).as_deref() != bound["uid"].as_str() {
                return None;
            }
        }
    }
    Some(User::new(
        format!("system:serviceaccount:{ns}:{name}"),
        [
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{ns}"),
        ],
    ))
}
