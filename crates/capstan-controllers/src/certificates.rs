//! CertificateSigningRequest approval and signing (Kubernetes' `pkg/controller/certificates`:
//! the `csrapproving` and `csrsigning` controllers), what node bootstrap relies on.
//!
//! - Approval: a CSR for `kubernetes.io/kube-apiserver-client-kubelet` whose PKCS#10 request names
//!   O=`system:nodes`, CN=`system:node:<name>`, no subject alternative names, and whose `usages` are
//!   digital signature + client auth (key encipherment optional) is approved when the requester is
//!   that same node (a renewal) or in `system:bootstrappers`: condition `Approved`, reason
//!   `AutoApproved`, through the `approval` subresource. kube asks a SubjectAccessReview
//!   (`certificatesigningrequests/nodeclient` and `/selfnodeclient`); Capstan decides by the group
//!   and the username directly. Others are left for a human (`kubectl certificate approve`).
//! - Kubelet serving certificates (`kubernetes.io/kubelet-serving`, O=`system:nodes`,
//!   CN=`system:node:<name>`, DNS/IP names, server auth) are approved when the requester is that node
//!   itself — kube leaves them to an external approver; Capstan serves its own nodes, as k3s does.
//! - Signing, only when [`crate::ControllerConfig::csr_signer`] is set: approved CSRs for
//!   `kubernetes.io/kube-apiserver-client-kubelet`, `kubernetes.io/kubelet-serving` and
//!   `kubernetes.io/kube-apiserver-client` get
//!   `status.certificate` (PEM) from the cluster CA through the `status` subresource, valid for
//!   `spec.expirationSeconds` (at least 10 minutes) or a year. A request the signer rejects gets the
//!   `Failed` condition (`SignerValidationFailure`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use crate::Context;
use crate::util::{Error, is_conflict, is_not_found, now};

/// Kubelet client certificates (node bootstrap and renewal).
pub(crate) const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Kubelet serving certificates (the kubelet's HTTPS port, which the API server verifies).
pub(crate) const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Other client certificates for the API server.
pub(crate) const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// Validity when the CSR does not ask (`--cluster-signing-duration`, 8760h).
const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest validity a CSR may ask for.
const MIN_VALIDITY: Duration = Duration::from_secs(600);

struct State {
    client: kube::Client,
    signer: Option<Arc<capstan_pki::Pki>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("signing", &self.signer.is_some())
            .finish()
    }
}

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let state = Arc::new(State {
        client: client.clone(),
        signer: ctx.config.csr_signer.clone(),
    });
    Controller::new(
        Api::<CertificateSigningRequest>::all(client),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile, error_policy, state)
    .for_each(|result| {
        if let Err(error) = result {
            tracing::debug!(controller = "certificates", %error, "reconcile failed");
        }
        futures::future::ready(())
    })
    .await;
}

fn error_policy(csr: Arc<CertificateSigningRequest>, error: &Error, _state: Arc<State>) -> Action {
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    match error {
        Error::Api(e) if is_conflict(e) => Action::requeue(Duration::from_millis(200)),
        _ => {
            tracing::warn!(controller = "certificates", name, %error, "sync failed, requeueing");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    state: Arc<State>,
) -> Result<Action, Error> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let span = tracing::info_span!("reconcile", controller = "certificates", key = %name);
    async {
        let api: Api<CertificateSigningRequest> = Api::all(state.client.clone());
        let csr = match approve(&api, &csr).await? {
            Some(updated) => updated,
            None => (*csr).clone(),
        };
        if let Some(signer) = state.signer.as_ref() {
            sign(&api, &csr, signer).await?;
        }
        Ok(Action::await_change())
    }
    .instrument(span)
    .await
}

fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// What the PKCS#10 request says about its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestSubject {
    pub(crate) common_name: Option<String>,
    pub(crate) organizations: Vec<String>,
    /// Any DNS name, e-mail address, IP address or URI requested.
    pub(crate) has_alt_names: bool,
}

/// Parses the PEM (or DER) certificate request.
pub(crate) fn parse_request(request: &[u8]) -> Result<RequestSubject, String> {
    let der = match x509_parser::pem::parse_x509_pem(request) {
        Ok((_, pem)) if pem.label == "CERTIFICATE REQUEST" => pem.contents,
        Ok((_, pem)) => return Err(format!("unexpected PEM block {:?}", pem.label)),
        Err(_) if request.first() == Some(&0x30) => request.to_vec(),
        Err(e) => return Err(format!("no certificate request PEM block: {e}")),
    };
    let (_, csr) = X509CertificationRequest::from_der(&der).map_err(|e| e.to_string())?;
    let subject = &csr.certification_request_info.subject;
    let text =
        |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().ok().map(str::to_owned);
    let has_alt_names = csr.requested_extensions().is_some_and(|mut exts| {
        exts.any(|e| matches!(e, ParsedExtension::SubjectAlternativeName(san) if !san.general_names.is_empty()))
    });
    Ok(RequestSubject {
        common_name: subject.iter_common_name().find_map(text),
        organizations: subject.iter_organization().filter_map(text).collect(),
        has_alt_names,
    })
}

/// `isNodeClientCert`: O=system:nodes only, CN=system:node:*, no SANs, kubelet client usages.
pub(crate) fn is_node_client_cert(subject: &RequestSubject, usages: &[String]) -> bool {
    let mut usages: Vec<&str> = usages.iter().map(String::as_str).collect();
    usages.sort_unstable();
    usages.dedup();
    let usages_ok = usages == ["client auth", "digital signature"]
        || usages == ["client auth", "digital signature", "key encipherment"];
    subject.organizations == ["system:nodes"]
        && !subject.has_alt_names
        && subject
            .common_name
            .as_deref()
            .is_some_and(|cn| cn.starts_with("system:node:"))
        && usages_ok
}

/// A kubelet serving certificate request: O=system:nodes only, CN=system:node:*, some DNS/IP
/// names, serving usages.
pub(crate) fn is_node_serving_cert(subject: &RequestSubject, usages: &[String]) -> bool {
    let mut usages: Vec<&str> = usages.iter().map(String::as_str).collect();
    usages.sort_unstable();
    usages.dedup();
    let usages_ok = usages == ["digital signature", "server auth"]
        || usages == ["digital signature", "key encipherment", "server auth"];
    subject.organizations == ["system:nodes"]
        && subject.has_alt_names
        && subject
            .common_name
            .as_deref()
            .is_some_and(|cn| cn.starts_with("system:node:"))
        && usages_ok
}

/// The approval decision for one CSR: `Some(message)` to approve.
pub(crate) fn approval(csr: &CertificateSigningRequest) -> Option<&'static str> {
    if csr.spec.signer_name == KUBELET_SERVING_SIGNER {
        // Kubernetes leaves these to an external approver; Capstan, like k3s, serves its own nodes:
        // a node that already authenticates as system:node:<name> gets a serving cert for that name.
        let subject = parse_request(&csr.spec.request.0).ok()?;
        let own = csr.spec.username.is_some() && csr.spec.username == subject.common_name;
        let node = csr
            .spec
            .groups
            .iter()
            .flatten()
            .any(|g| g == "system:nodes");
        return (own
            && node
            && is_node_serving_cert(&subject, csr.spec.usages.as_deref().unwrap_or_default()))
        .then_some("Auto approving self kubelet serving certificate.");
    }
    if csr.spec.signer_name != KUBELET_CLIENT_SIGNER {
        return None;
    }
    let subject = parse_request(&csr.spec.request.0).ok()?;
    if !is_node_client_cert(&subject, csr.spec.usages.as_deref().unwrap_or_default()) {
        return None;
    }
    if csr.spec.username.is_some() && csr.spec.username == subject.common_name {
        return Some("Auto approving self kubelet client certificate after SubjectAccessReview.");
    }
    let bootstrapper = csr
        .spec
        .groups
        .iter()
        .flatten()
        .any(|g| g == "system:bootstrappers");
    bootstrapper.then_some("Auto approving kubelet client certificate after SubjectAccessReview.")
}

/// Approves the CSR if it qualifies; returns the updated object.
async fn approve(
    api: &Api<CertificateSigningRequest>,
    csr: &CertificateSigningRequest,
) -> Result<Option<CertificateSigningRequest>, Error> {
    if has_condition(csr, "Approved") || has_condition(csr, "Denied") {
        return Ok(None);
    }
    let Some(message) = approval(csr) else {
        return Ok(None);
    };
    let mut conditions = csr
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = now();
    conditions.push(CertificateSigningRequestCondition {
        type_: "Approved".into(),
        status: "True".into(),
        reason: Some("AutoApproved".into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    });
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({
        "metadata": {"resourceVersion": csr.metadata.resource_version},
        "status": {"conditions": conditions},
    });
    tracing::info!(
        csr = name,
        "auto-approving kubelet client certificate request"
    );
    match api
        .patch_approval(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(updated) => Ok(Some(updated)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Signs an approved CSR of a signer we serve.
async fn sign(
    api: &Api<CertificateSigningRequest>,
    csr: &CertificateSigningRequest,
    pki: &capstan_pki::Pki,
) -> Result<(), Error> {
    let signer = csr.spec.signer_name.as_str();
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if !matches!(
        signer,
        KUBELET_CLIENT_SIGNER | CLIENT_SIGNER | KUBELET_SERVING_SIGNER
    ) || !has_condition(csr, "Approved")
        || has_condition(csr, "Denied")
        || has_condition(csr, "Failed")
        || issued
    {
        return Ok(());
    }
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    let validity = csr
        .spec
        .expiration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(DEFAULT_VALIDITY, |s| {
            Duration::from_secs(s).clamp(MIN_VALIDITY, DEFAULT_VALIDITY)
        });
    let checked = if signer == KUBELET_CLIENT_SIGNER {
        parse_request(&csr.spec.request.0).and_then(|s| {
            if is_node_client_cert(&s, csr.spec.usages.as_deref().unwrap_or_default()) {
                Ok(())
            } else {
                Err("invalid kubelet client certificate request: subject must be O=system:nodes, CN=system:node:<name>, with client auth usages".into())
            }
        })
    } else if signer == KUBELET_SERVING_SIGNER {
        parse_request(&csr.spec.request.0).and_then(|s| {
            if is_node_serving_cert(&s, csr.spec.usages.as_deref().unwrap_or_default()) {
                Ok(())
            } else {
                Err("invalid kubelet serving certificate request: subject must be O=system:nodes, CN=system:node:<name>, with DNS or IP names and server auth usages".into())
            }
        })
    } else {
        Ok(())
    };
    let status = match checked.and_then(|()| {
        if signer == KUBELET_SERVING_SIGNER {
            pki.sign_serving_csr(&csr.spec.request.0, validity)
        } else {
            pki.sign_client_csr(&csr.spec.request.0, validity)
        }
        .map_err(|e| e.to_string())
    }) {
        Ok(pem) => {
            tracing::info!(csr = name, signer, "signed certificate request");
            json!({"status": {"certificate": ByteString(pem.into_bytes())}})
        }
        Err(error) => {
            tracing::warn!(csr = name, %error, "certificate request rejected by the signer");
            let mut conditions = csr
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let now = now();
            conditions.push(CertificateSigningRequestCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("SignerValidationFailure".into()),
                message: Some(error),
                last_update_time: Some(now.clone()),
                last_transition_time: Some(now),
            });
            json!({"status": {"conditions": conditions}})
        }
    };
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    use super::*;

    fn request(cn: &str, orgs: &[&str], sans: &[&str]) -> String {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name = dn;
        params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    fn csr(
        pem: &str,
        signer: &str,
        usages: &[&str],
        user: &str,
        groups: &[&str],
    ) -> CertificateSigningRequest {
        serde_json::from_value(json!({
            "metadata": {"name": "csr-1"},
            "spec": {
                "request": ByteString(pem.as_bytes().to_vec()),
                "signerName": signer,
                "usages": usages,
                "username": user,
                "groups": groups,
            }
        }))
        .expect("csr")
    }

    #[test]
    fn parses_the_subject_of_a_pem_request() {
        let s = parse_request(request("system:node:n1", &["system:nodes"], &[]).as_bytes())
            .expect("parse");
        assert_eq!(s.common_name.as_deref(), Some("system:node:n1"));
        assert_eq!(s.organizations, ["system:nodes"]);
        assert!(!s.has_alt_names);
        let s = parse_request(request("x", &[], &["x.example"]).as_bytes()).expect("parse");
        assert!(s.has_alt_names);
        assert!(parse_request(b"not a request").is_err());
    }

    #[test]
    fn approval_cases() {
        let node = request("system:node:n1", &["system:nodes"], &[]);
        let usages = ["digital signature", "client auth"];
        let with_key = ["key encipherment", "digital signature", "client auth"];
        let boot = ["system:bootstrappers", "system:authenticated"];
        let bootstrap =
            Some("Auto approving kubelet client certificate after SubjectAccessReview.");
        let renewal =
            Some("Auto approving self kubelet client certificate after SubjectAccessReview.");
        let cases = [
            (
                csr(
                    &node,
                    KUBELET_CLIENT_SIGNER,
                    &usages,
                    "system:bootstrap:abc",
                    &boot,
                ),
                bootstrap,
            ),
            (
                csr(
                    &node,
                    KUBELET_CLIENT_SIGNER,
                    &with_key,
                    "system:bootstrap:abc",
                    &boot,
                ),
                bootstrap,
            ),
            (
                csr(
                    &node,
                    KUBELET_CLIENT_SIGNER,
                    &usages,
                    "system:node:n1",
                    &["system:nodes"],
                ),
                renewal,
            ),
            // Another node may not renew for n1; neither may an ordinary user.
            (
                csr(
                    &node,
                    KUBELET_CLIENT_SIGNER,
                    &usages,
                    "system:node:n2",
                    &["system:nodes"],
                ),
                None,
            ),
            (
                csr(&node, KUBELET_CLIENT_SIGNER, &usages, "alice", &["devs"]),
                None,
            ),
            // Wrong usages, signer or subject.
            (
                csr(
                    &node,
                    KUBELET_CLIENT_SIGNER,
                    &["digital signature", "server auth"],
                    "system:bootstrap:abc",
                    &boot,
                ),
                None,
            ),
            (
                csr(&node, CLIENT_SIGNER, &usages, "system:bootstrap:abc", &boot),
                None,
            ),
            (
                csr(
                    &request("system:node:n1", &["system:masters"], &[]),
                    KUBELET_CLIENT_SIGNER,
                    &usages,
                    "system:bootstrap:abc",
                    &boot,
                ),
                None,
            ),
            (
                csr(
                    &request("admin", &["system:nodes"], &[]),
                    KUBELET_CLIENT_SIGNER,
                    &usages,
                    "system:bootstrap:abc",
                    &boot,
                ),
                None,
            ),
            (
                csr(
                    &request("system:node:n1", &["system:nodes"], &["n1.example"]),
                    KUBELET_CLIENT_SIGNER,
                    &usages,
                    "system:bootstrap:abc",
                    &boot,
                ),
                None,
            ),
        ];
        for (i, (c, want)) in cases.into_iter().enumerate() {
            assert_eq!(approval(&c), want, "case {i}");
        }
    }

    #[test]
    fn serving_requests_are_approved_only_for_the_node_itself() {
        let serving = request("system:node:n1", &["system:nodes"], &["n1", "10.0.0.5"]);
        let usages = ["digital signature", "server auth"];
        let nodes = ["system:nodes", "system:authenticated"];
        let own = Some("Auto approving self kubelet serving certificate.");
        let cases = [
            (
                csr(
                    &serving,
                    KUBELET_SERVING_SIGNER,
                    &usages,
                    "system:node:n1",
                    &nodes,
                ),
                own,
            ),
            // Another node, a bootstrapper, no names, client usages: left for a human.
            (
                csr(
                    &serving,
                    KUBELET_SERVING_SIGNER,
                    &usages,
                    "system:node:n2",
                    &nodes,
                ),
                None,
            ),
            (
                csr(
                    &serving,
                    KUBELET_SERVING_SIGNER,
                    &usages,
                    "system:bootstrap:abc",
                    &["system:bootstrappers"],
                ),
                None,
            ),
            (
                csr(
                    &request("system:node:n1", &["system:nodes"], &[]),
                    KUBELET_SERVING_SIGNER,
                    &usages,
                    "system:node:n1",
                    &nodes,
                ),
                None,
            ),
            (
                csr(
                    &serving,
                    KUBELET_SERVING_SIGNER,
                    &["digital signature", "client auth"],
                    "system:node:n1",
                    &nodes,
                ),
                None,
            ),
        ];
        for (i, (c, want)) in cases.into_iter().enumerate() {
            assert_eq!(approval(&c), want, "case {i}");
        }
    }
}
