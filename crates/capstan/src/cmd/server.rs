//! `capstan server`: the control plane in one process (store, API server; scheduler, controllers and
//! the local agent join as they are built).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use capstan_apiserver::{
    AdmissionConfig, ApiServer, ApiServerConfig, RbacAuthorizer, ServiceNetwork, Tokens, User,
};
use capstan_store::{EtcdStore, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

use crate::cli::{Packaged, ServerArgs};
use crate::leader;

/// The service network, as k3s defaults it.
const SERVICE_CIDR: &str = "10.43.0.0/16";

pub(crate) fn run(args: ServerArgs) -> ExitCode {
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
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capstan: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The address other hosts reach this one at: the source address of the default route, found by
/// connecting (not sending on) a UDP socket, or loopback when there is no route.
fn primary_address(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

async fn open_store(args: &ServerArgs) -> Result<Arc<dyn Store>> {
    match &args.datastore_endpoint {
        None => {
            let dir = args.data_dir.join("db");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let store = SqliteStore::open(dir.join("state.db"))
                .context("cannot open the embedded store")?;
            Ok(Arc::new(store))
        }
        Some(endpoint) => {
            let endpoints: Vec<String> = endpoint
                .split(',')
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect();
            let store = EtcdStore::connect(&endpoints)
                .await
                .with_context(|| format!("cannot connect to etcd at {endpoint}"))?;
            Ok(Arc::new(store))
        }
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

async fn serve(args: ServerArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let advertise = primary_address(args.bind_address);
    let store = open_store(&args).await?;

    let pki = capstan_pki::Pki::load_or_create(&args.data_dir.join("tls"))
        .context("cannot set up the cluster CA")?;
    // Pods reach the API server as the `kubernetes` Service: its cluster IP and DNS names.
    let mut sans = vec![hostname(), advertise.to_string(), "10.43.0.1".to_owned()];
    sans.extend(
        [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .map(str::to_owned),
    );
    sans.extend(args.tls_san.iter().cloned());
    let serving = pki
        .serving_cert(&sans)
        .context("cannot issue the serving certificate")?;
    let tls = pki
        .server_tls_config(&serving)
        .context("cannot build the TLS configuration")?;

    let kubeconfig = args
        .write_kubeconfig
        .clone()
        .unwrap_or_else(|| args.data_dir.join("admin.kubeconfig"));
    write_admin_kubeconfig(
        &pki,
        &kubeconfig,
        &local_url(args.bind_address, args.https_port),
    )?;

    let tokens = Arc::new(Tokens::default());
    let token = capstan_pki::load_or_create_join_token(&args.data_dir.join("token"), pki.ca_pem())
        .context("cannot create the join token")?;
    // The join token lets a new node bootstrap (request its client certificate); nothing more.
    tokens.insert(
        token.clone(),
        User::new(
            "system:bootstrap:capstan",
            ["system:bootstrappers", "system:bootstrappers:capstan"],
        ),
    );
    if let Some((_, secret)) = token.split_once("::server:") {
        tokens.insert(
            secret.to_owned(),
            User::new("system:bootstrap:capstan", ["system:bootstrappers"]),
        );
    }

    let address = SocketAddr::new(args.bind_address, args.https_port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let services = ServiceNetwork::parse(SERVICE_CIDR).context("bad service CIDR")?;
    let server = ApiServer::new(ApiServerConfig {
        listener,
        tls,
        store,
        admission: AdmissionConfig {
            not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
        },
        services,
        authorizer: Arc::new(RbacAuthorizer::new()),
        tokens,
        advertise_address: advertise,
        kubelet_client_tls: Some(kubelet_client_tls(&pki)?),
    })
    .map_err(|e| anyhow::anyhow!("cannot start the API server: {e}"))?
    .with_cluster_ca(pki.ca_pem())
    .with_service_account_signer(Arc::new(
        capstan_pki::TokenSigner::load_or_create(&pki.dir().join("service-account.key"))
            .context("cannot load the service account token key")?,
    ));
    tracing::info!(%address, kubeconfig = %kubeconfig.display(), "capstan server listening");

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    let api = tokio::spawn(server.run(shutdown.clone()));

    // Scheduler and controllers are API clients like any other, each behind its own Lease.
    let url = local_url(args.bind_address, args.https_port);
    let identity = format!("{}_{}", hostname(), std::process::id());
    let scheduler_client = component_client(&pki, &url, "system:kube-scheduler", &[]).await?;
    let controllers_client =
        component_client(&pki, &url, "system:kube-controller-manager", &[]).await?;
    if !args.disable_agent {
        let node_name = args.node_name.clone().unwrap_or_else(hostname);
        let node_ip = args.node_ip.unwrap_or(advertise);
        let (mut config, client, tls) = local_agent(&pki, &url, &args, &node_name, node_ip).await?;
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
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = capstan_kubelet::run(config, client, tls, stop).await {
                tracing::error!(error = %e, "the local agent failed; this server runs no pods");
            }
        });
    }
    let controller_config = capstan_controllers::ControllerConfig {
        node_monitor_grace_period: args.node_monitor_grace_period,
        // The CSR signer: the same CA, loaded again (Pki is not Clone; the server keeps its own).
        csr_signer: Some(Arc::new(
            capstan_pki::Pki::load_or_create(&args.data_dir.join("tls"))
                .context("cannot load the cluster CA for the CSR signer")?,
        )),
        service_lb: !args.disable.contains(&Packaged::Servicelb),
        ..Default::default()
    };
    if !args.disable.contains(&Packaged::Coredns) {
        let client = component_client(&pki, &url, "system:kube-dns", &[]).await?;
        let config = capstan_dns::DnsConfig::new(advertise, &hostname());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = capstan_dns::run(client, config, stop).await {
                tracing::error!(error = %e, "cluster DNS failed; pods resolve no cluster names");
            }
        });
    }
    let scheduler = async {
        if args.disable_scheduler {
            return;
        }
        leader::run_elected(
            scheduler_client.clone(),
            "kube-scheduler",
            identity.clone(),
            shutdown.clone(),
            |stop| {
                let scheduler = capstan_scheduler::Scheduler::new(
                    scheduler_client.clone(),
                    capstan_scheduler::SchedulerOptions::default(),
                );
                scheduler.run(stop)
            },
        )
        .await
    };
    let controllers = async {
        if args.disable_controller_manager {
            return;
        }
        leader::run_elected(
            controllers_client.clone(),
            "kube-controller-manager",
            identity.clone(),
            shutdown.clone(),
            |stop| {
                capstan_controllers::run_all(
                    controllers_client.clone(),
                    controller_config.clone(),
                    stop,
                )
            },
        )
        .await
    };
    tokio::join!(scheduler, controllers);
    let _ = api.await;
    // Give in-flight store writes a moment to be acknowledged before the process exits.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// The certificate the API server presents to kubelets (logs, exec, port-forward).
fn kubelet_client_tls(pki: &capstan_pki::Pki) -> Result<Arc<rustls::ClientConfig>> {
    let cert = pki
        .issue_client_cert(
            "kube-apiserver-kubelet-client",
            &["system:masters"],
            Duration::from_secs(365 * 24 * 3600),
        )
        .context("cannot issue the kubelet client certificate")?;
    capstan_pki::client_tls_config(pki.ca_pem(), Some(&cert))
        .context("cannot build the kubelet client TLS configuration")
}

/// The agent that runs inside `capstan server` (as k3s does): a kubelet for this machine.
async fn local_agent(
    pki: &capstan_pki::Pki,
    url: &str,
    args: &ServerArgs,
    node_name: &str,
    node_ip: IpAddr,
) -> Result<(
    capstan_kubelet::KubeletConfig,
    kube::Client,
    Arc<rustls::ServerConfig>,
)> {
    let user = format!("system:node:{node_name}");
    let client = component_client(pki, url, &user, &["system:nodes"]).await?;
    let serving = pki
        .serving_cert(&[node_name.to_owned(), node_ip.to_string(), hostname()])
        .context("cannot issue the kubelet serving certificate")?;
    let tls = pki
        .server_tls_config(&serving)
        .context("cannot build the kubelet TLS configuration")?;
    let mut config =
        capstan_kubelet::KubeletConfig::new(node_name, args.data_dir.join("agent"), node_ip);
    config.container_runtime_endpoint = args.container_runtime_endpoint.clone();
    config.node_external_ip = args.node_external_ip;
    Ok((config, client, tls))
}

/// A client of the local API server authenticated as `user` by a client certificate.
async fn component_client(
    pki: &capstan_pki::Pki,
    url: &str,
    user: &str,
    groups: &[&str],
) -> Result<kube::Client> {
    let cert = pki
        .issue_client_cert(user, groups, Duration::from_secs(365 * 24 * 3600))
        .with_context(|| format!("cannot issue the certificate of {user}"))?;
    let yaml = capstan_pki::kubeconfig_yaml(url, pki.ca_pem(), &cert);
    capstan_client::from_kubeconfig_yaml(&yaml)
        .await
        .with_context(|| format!("cannot build the API client of {user}"))
}

/// Where clients on this machine reach the server: loopback, unless it listens on one address only.
fn local_url(bind: IpAddr, port: u16) -> String {
    let host = if bind.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bind
    };
    format!("https://{}", SocketAddr::new(host, port))
}

fn write_admin_kubeconfig(pki: &capstan_pki::Pki, path: &Path, server: &str) -> Result<()> {
    let admin = pki
        .issue_client_cert(
            "admin",
            &["system:masters"],
            Duration::from_secs(365 * 24 * 3600),
        )
        .context("cannot issue the admin certificate")?;
    capstan_pki::write_kubeconfig(path, server, pki.ca_pem(), &admin)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
