//! CSR approval and signing on a TestCluster: a node's bootstrap request is approved and signed by
//! the configured CA; other requests are left alone; without a signer nothing is signed.

mod support;

use std::sync::Arc;

use capstan_controllers::ControllerConfig;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use kube::config::Kubeconfig;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::json;
use support::{eventually, start, start_with};
use x509_parser::prelude::FromDer;

fn request(cn: &str, org: &str) -> String {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, org);
    params.distinguished_name = dn;
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

/// A CSR as `user` in `groups` sends it. kube-apiserver fills `spec.username`/`groups` from the
/// requester itself; Capstan's API server does not yet, so the body carries the same values.
fn csr_body(
    name: &str,
    pem: &str,
    signer: &str,
    usages: &[&str],
    (user, groups): (&str, &[&str]),
) -> CertificateSigningRequest {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"request": ByteString(pem.as_bytes().to_vec()), "signerName": signer, "usages": usages,
                 "username": user, "groups": groups},
    }))
    .expect("csr")
}

/// A client that authenticates as `user` in `groups`.
async fn client_as(
    cluster: &capstan_apiserver::testing::TestCluster,
    user: &str,
    groups: &[&str],
) -> kube::Client {
    let kc = Kubeconfig::from_yaml(&cluster.kubeconfig_for(user, groups)).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

fn condition(csr: &CertificateSigningRequest, type_: &str) -> Option<(String, String)> {
    let c = csr
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.reason.clone()?, c.message.clone()?))
}

#[tokio::test]
async fn a_bootstrap_kubelet_request_is_approved_and_signed() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Arc::new(capstan_pki::Pki::load_or_create(dir.path()).expect("pki"));
    let h = start_with(ControllerConfig {
        csr_signer: Some(pki.clone()),
        ..Default::default()
    })
    .await;
    let bootstrap = client_as(
        &h.cluster,
        "system:bootstrap:abc",
        &["system:bootstrappers"],
    )
    .await;
    let api: Api<CertificateSigningRequest> = Api::all(bootstrap);
    api.create(
        &PostParams::default(),
        &csr_body(
            "node-csr-n1",
            &request("system:node:n1", "system:nodes"),
            "kubernetes.io/kube-apiserver-client-kubelet",
            &["digital signature", "key encipherment", "client auth"],
            ("system:bootstrap:abc", &["system:bootstrappers"]),
        ),
    )
    .await
    .expect("create csr");

    let admin: Api<CertificateSigningRequest> = Api::all(h.client.clone());
    let csr = eventually("a signed certificate", || async {
        let csr = admin.get("node-csr-n1").await.expect("get");
        let cert = csr.status.as_ref()?.certificate.as_ref()?;
        (!cert.0.is_empty()).then_some(csr)
    })
    .await;
    assert_eq!(
        condition(&csr, "Approved"),
        Some((
            "AutoApproved".into(),
            "Auto approving kubelet client certificate after SubjectAccessReview.".into()
        ))
    );
    let pem = csr
        .status
        .and_then(|s| s.certificate)
        .expect("certificate")
        .0;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(&block.contents).expect("der");
    let cn: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    assert_eq!(cn, ["system:node:n1"]);
    let (_, ca_block) = x509_parser::pem::parse_x509_pem(pki.ca_pem().as_bytes()).expect("ca pem");
    let (_, ca) =
        x509_parser::certificate::X509Certificate::from_der(&ca_block.contents).expect("ca der");
    assert_eq!(cert.issuer(), ca.subject(), "issued by the configured CA");
}

#[tokio::test]
async fn other_requests_wait_for_a_human_and_nothing_is_signed_without_a_signer() {
    let h = start().await;
    let admin: Api<CertificateSigningRequest> = Api::all(h.client.clone());
    let user = client_as(&h.cluster, "alice", &["devs"]).await;
    Api::<CertificateSigningRequest>::all(user)
        .create(
            &PostParams::default(),
            &csr_body(
                "alice",
                &request("system:node:n9", "system:nodes"),
                "kubernetes.io/kube-apiserver-client-kubelet",
                &["digital signature", "client auth"],
                ("alice", &["devs"]),
            ),
        )
        .await
        .expect("create");
    let bootstrap = client_as(
        &h.cluster,
        "system:bootstrap:abc",
        &["system:bootstrappers"],
    )
    .await;
    Api::<CertificateSigningRequest>::all(bootstrap)
        .create(
            &PostParams::default(),
            &csr_body(
                "boot",
                &request("system:node:n2", "system:nodes"),
                "kubernetes.io/kube-apiserver-client-kubelet",
                &["digital signature", "client auth"],
                ("system:bootstrap:abc", &["system:bootstrappers"]),
            ),
        )
        .await
        .expect("create");
    // The bootstrap request is approved (approval runs without a signer) but not signed.
    eventually("boot approved", || async {
        condition(&admin.get("boot").await.expect("get"), "Approved")
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let boot = admin.get("boot").await.expect("get");
    assert!(boot.status.and_then(|s| s.certificate).is_none());
    let alice = admin.get("alice").await.expect("get");
    assert_eq!(
        condition(&alice, "Approved"),
        None,
        "an ordinary user's request is not auto-approved"
    );
}
