//! `capstan agent`: joins a node to a cluster and runs its kubelet.
//!
//! Joining is the Kubernetes TLS bootstrap, k3s-style: fetch the CA from the server's `/cacerts` and
//! check it against the hash in the join token, then (authenticated by the token) request a client
//! certificate for `system:node:<name>` through a CertificateSigningRequest the controller manager
//! approves and signs, and a serving certificate for the kubelet's HTTPS port the same way (as the
//! node). Certificates are kept in the data dir, so a restarted agent does not join again.

use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use capstan_pki::{CertKeyPair, JoinToken};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

use crate::cli::AgentArgs;

pub(crate) fn run(args: AgentArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("capstan: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capstan: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn agent(args: AgentArgs) -> Result<()> {
    let token = JoinToken::parse(&args.token).context("bad --token")?;
    let server = args.server.trim_end_matches('/').to_owned();
    if !server.starts_with("https://") {
        bail!("--server must be an https:// URL, got {server:?}");
    }
    let node_name = args
        .node_name
        .clone()
        .unwrap_or_else(super::server::hostname);
    let tls_dir = args.data_dir.join("tls");
    std::fs::create_dir_all(&tls_dir)
        .with_context(|| format!("cannot create {}", tls_dir.display()))?;
    let node_ip = args.node_ip.unwrap_or_else(|| node_ip(&server));

    let ca_pem = match read_opt(&tls_dir.join("ca.crt"))? {
        Some(pem) => pem,
        None => {
            let pem = fetch_ca(&server).await?;
            if !token.ca_matches(&pem).context("bad CA from the server")? {
                bail!(
                    "the server's CA does not match the hash in the join token: refusing to join"
                );
            }
            write_private(&tls_dir.join("ca.crt"), &pem)?;
            pem
        }
    };
    let client_cert = match read_pair(&tls_dir, "client")? {
        Some(pair) => pair,
        None => {
            let bootstrap = client_from(&capstan_pki::token_kubeconfig_yaml(
                &server,
                &ca_pem,
                args.token.trim(),
            ))
            .await?;
            let pair = request_cert(
                bootstrap,
                &node_name,
                "kubernetes.io/kube-apiserver-client-kubelet",
                &[],
                &["digital signature", "client auth"],
            )
            .await
            .context("cannot get a client certificate for this node")?;
            write_pair(&tls_dir, "client", &pair)?;
            pair
        }
    };
    let kubeconfig = capstan_pki::kubeconfig_yaml(&server, &ca_pem, &client_cert);
    write_private(&args.data_dir.join("kubelet.kubeconfig"), &kubeconfig)?;
    let client = client_from(&kubeconfig).await?;
    let serving = match read_pair(&tls_dir, "serving")? {
        Some(pair) => pair,
        None => {
            let sans = vec![
                node_ip.to_string(),
                node_name.clone(),
                super::server::hostname(),
            ];
            let pair = request_cert(
                client.clone(),
                &node_name,
                "kubernetes.io/kubelet-serving",
                &sans,
                &["digital signature", "server auth"],
            )
            .await
            .context("cannot get a serving certificate for this node's kubelet")?;
            write_pair(&tls_dir, "serving", &pair)?;
            pair
        }
    };
    let tls = capstan_pki::server_tls_config(&ca_pem, &serving)
        .context("bad kubelet serving certificate")?;
    tracing::info!(node = %node_name, %server, "joined the cluster");

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        super::server::wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    let mut config =
        capstan_kubelet::KubeletConfig::new(&node_name, args.data_dir.join("agent"), node_ip);
    config.container_runtime_endpoint = args.container_runtime_endpoint.clone();
    config.node_external_ip = args.node_external_ip;
    super::spawn_pod_network(
        client.clone(),
        &mut config,
        args.flannel_backend.backend(),
        shutdown.clone(),
    )
    .await;
    if !args.disable_kube_proxy {
        super::spawn_proxy(client.clone(), &node_name, shutdown.clone());
    }
    capstan_kubelet::run(config, client, tls, shutdown)
        .await
        .context("the kubelet failed")?;
    Ok(())
}

/// The address this node is reached at: the source address towards the server.
fn node_ip(server: &str) -> IpAddr {
    let host_port = server.trim_start_matches("https://");
    let addr = host_port
        .parse::<std::net::SocketAddr>()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| host_port.to_owned());
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect(&addr)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// `GET /cacerts` without trusting anything yet: the token's hash is checked afterwards.
async fn fetch_ca(server: &str) -> Result<String> {
    let mut config = kube::Config::new(server.parse().context("bad --server URL")?);
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config).context("cannot build a client")?;
    let request = http::Request::get("/cacerts")
        .body(Vec::new())
        .context("cannot build the /cacerts request")?;
    let mut last = None;
    for _ in 0..50 {
        match client.request_text(request.clone()).await {
            Ok(pem) if pem.contains("BEGIN CERTIFICATE") => return Ok(pem),
            Ok(other) => last = Some(anyhow::anyhow!("unexpected /cacerts answer: {other:.80}")),
            Err(e) => last = Some(anyhow::anyhow!("cannot reach {server}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("cannot fetch the CA")))
}

async fn client_from(kubeconfig_yaml: &str) -> Result<kube::Client> {
    capstan_client::from_kubeconfig_yaml(kubeconfig_yaml)
        .await
        .context("cannot build an API client")
}

/// Creates a CertificateSigningRequest for `system:node:<node>` and waits until it is signed.
async fn request_cert(
    client: kube::Client,
    node: &str,
    signer: &str,
    sans: &[String],
    usages: &[&str],
) -> Result<CertKeyPair> {
    let (csr_pem, key_pem) =
        capstan_pki::new_csr(&format!("system:node:{node}"), Some("system:nodes"), sans)
            .context("cannot create a certificate request")?;
    let api: Api<CertificateSigningRequest> = Api::all(client);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(if signer.ends_with("serving") {
                "csr-".into()
            } else {
                "node-csr-".into()
            }),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(csr_pem.into_bytes()),
            signer_name: signer.to_owned(),
            usages: Some(usages.iter().map(|u| (*u).to_owned()).collect()),
            ..Default::default()
        },
        status: None,
    };
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .context("cannot create the CSR")?;
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = %name, signer, "waiting for the certificate");
    for _ in 0..300 {
        let current = api.get(&name).await.context("cannot read the CSR")?;
        let status = current.status.unwrap_or_default();
        if let Some(denied) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            bail!(
                "CSR {name} {}: {}",
                denied.type_.to_lowercase(),
                denied.message.clone().unwrap_or_default()
            );
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            let cert_pem =
                String::from_utf8(cert.0).context("the issued certificate is not PEM")?;
            return Ok(CertKeyPair { cert_pem, key_pem });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("CSR {name} was not signed within 60 s (is the controller manager running?)")
}

fn read_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn read_pair(dir: &Path, name: &str) -> Result<Option<CertKeyPair>> {
    match (
        read_opt(&dir.join(format!("{name}.crt")))?,
        read_opt(&dir.join(format!("{name}.key")))?,
    ) {
        (Some(cert_pem), Some(key_pem)) => Ok(Some(CertKeyPair { cert_pem, key_pem })),
        _ => Ok(None),
    }
}

fn write_pair(dir: &Path, name: &str, pair: &CertKeyPair) -> Result<()> {
    write_private(&dir.join(format!("{name}.key")), &pair.key_pem)?;
    write_private(&dir.join(format!("{name}.crt")), &pair.cert_pem)
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
