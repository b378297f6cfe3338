//! The DNS server against a real in-process API server: it registers itself as
//! `kube-system/kube-dns` with its real port, answers cluster names from Services and
//! EndpointSlices over UDP and TCP, and forwards other names to a fake upstream resolver. Queries
//! are built and read with the small codec below (independent of the crate's own).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use capstan_apiserver::testing::TestCluster;
use capstan_dns::DnsConfig;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;
use kube::config::Kubeconfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

const TYPE_A: u16 = 1;
const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;
/// What the fake upstream answers for every name.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// A query for `name`/`qtype` with recursion desired, no EDNS.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

#[derive(Debug)]
struct Reply {
    id: u16,
    rcode: u8,
    truncated: bool,
    /// A records of the answer section.
    addresses: Vec<Ipv4Addr>,
    answers: usize,
    authority: usize,
}

fn skip_name(buf: &[u8], mut pos: usize) -> usize {
    loop {
        let len = buf[pos];
        if len & 0xc0 == 0xc0 {
            return pos + 2;
        }
        if len == 0 {
            return pos + 1;
        }
        pos += 1 + usize::from(len);
    }
}

fn parse(buf: &[u8]) -> Reply {
    let u16_at = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    assert!(
        buf.len() >= 12 && buf[2] & 0x80 != 0,
        "not a response: {buf:?}"
    );
    let (qd, an, ns) = (u16_at(4), u16_at(6), u16_at(8));
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(buf, pos) + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..an {
        pos = skip_name(buf, pos);
        let rtype = u16_at(pos);
        let rdlen = usize::from(u16_at(pos + 8));
        pos += 10;
        if rtype == TYPE_A && rdlen == 4 {
            addresses.push(Ipv4Addr::new(
                buf[pos],
                buf[pos + 1],
                buf[pos + 2],
                buf[pos + 3],
            ));
        }
        pos += rdlen;
    }
    addresses.sort();
    Reply {
        id: u16_at(0),
        rcode: buf[3] & 0x0f,
        truncated: buf[2] & 0x02 != 0,
        addresses,
        answers: usize::from(an),
        authority: usize::from(ns),
    }
}

async fn ask_udp(server: SocketAddr, name: &str, qtype: u16) -> Option<Reply> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket
        .send_to(&query(4242, name, qtype), server)
        .await
        .expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    let reply = parse(&buf[..n]);
    assert_eq!(reply.id, 4242);
    Some(reply)
}

async fn ask_tcp(server: SocketAddr, name: &str, qtype: u16) -> Reply {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let q = query(4343, name, qtype);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    stream.write_all(&framed).await.expect("write");
    let len = stream.read_u16().await.expect("length");
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.expect("reply");
    let reply = parse(&buf);
    assert_eq!(reply.id, 4343);
    reply
}

/// Polls `f` until it returns `Some`, for up to 15 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fake upstream's reply: one A record, or for names starting with `big` 30 of them over
/// TCP and an empty truncated reply over UDP (as a real resolver does when they do not fit).
fn upstream_reply(q: &[u8], tcp: bool) -> Vec<u8> {
    let end = skip_name(q, 12) + 4;
    let big = q.get(12..16) == Some(b"\x03big");
    let mut reply = q[..end].to_vec();
    reply[2] = if big && !tcp { 0x83 } else { 0x81 }; // QR, RD (+ TC)
    reply[3] = 0x80; // RA, NOERROR
    let addresses: Vec<Ipv4Addr> = match (big, tcp) {
        (false, _) => vec![UPSTREAM_ANSWER],
        (true, false) => vec![],
        (true, true) => (1..=30).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect(),
    };
    reply[6..12].copy_from_slice(&[0, addresses.len() as u8, 0, 0, 0, 0]);
    for ip in addresses {
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    reply
}

/// A resolver on UDP and TCP (one port) answering with [`upstream_reply`], counting queries.
async fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let (socket, listener) = loop {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = socket.local_addr().expect("upstream addr");
        if let Ok(listener) = TcpListener::bind(addr).await {
            break (socket, listener);
        }
    };
    let addr = socket.local_addr().expect("upstream addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = socket
                .send_to(&upstream_reply(&buf[..n], false), peer)
                .await;
        }
    });
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let Ok(len) = stream.read_u16().await else {
                continue;
            };
            let mut q = vec![0u8; usize::from(len)];
            if stream.read_exact(&mut q).await.is_err() {
                continue;
            }
            let reply = upstream_reply(&q, true);
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            let _ = stream.write_all(&framed).await;
        }
    });
    (addr, seen)
}

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

#[tokio::test]
async fn dns_registers_itself_and_answers_cluster_and_outside_names() {
    let cluster = TestCluster::start().await;
    let kubeconfig = Kubeconfig::from_yaml(&cluster.admin_kubeconfig()).expect("kubeconfig");
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    let client = kube::Client::try_from(client_config).expect("client");
    let (upstream, upstream_queries) = fake_upstream().await;

    let mut config = DnsConfig::new(Ipv4Addr::LOCALHOST.into(), "Test_Node.1");
    config.upstreams = Some(vec![upstream]);
    assert_eq!(config.bind, "127.0.0.1:0".parse().expect("addr"));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(capstan_dns::run(client.clone(), config, shutdown.clone()));

    // Registration: the slice names the real port, and so do the Service and Endpoints.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    let slice = eventually("the kube-dns endpointslice", || async {
        slices
            .get_opt("kube-dns-test-node-1")
            .await
            .expect("get slice")
    })
    .await;
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/service-name"], "kube-dns");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "dns.capstan.io"
    );
    assert_eq!(slice.endpoints[0].addresses, ["127.0.0.1"]);
    let ports = slice.ports.clone().unwrap_or_default();
    assert_eq!(ports.len(), 2);
    let port = u16::try_from(ports[0].port.expect("port")).expect("u16");
    assert_ne!(port, 0);
    assert!(ports.iter().all(|p| p.port == Some(i32::from(port))));
    let server_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let svc: Service = Api::namespaced(client.clone(), "kube-system")
        .get("kube-dns")
        .await
        .expect("kube-dns service");
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.43.0.10"));
    assert!(spec.selector.is_none());
    let svc_ports: Vec<_> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.protocol.clone(),
                p.port,
                p.target_port.clone(),
            )
        })
        .collect();
    assert_eq!(
        svc_ports,
        [
            (
                "dns".into(),
                Some("UDP".into()),
                53,
                Some(IntOrString::Int(i32::from(port)))
            ),
            (
                "dns-tcp".into(),
                Some("TCP".into()),
                53,
                Some(IntOrString::Int(i32::from(port)))
            ),
        ]
    );
    // Endpoints are written after the slice: wait for them too.
    let endpoints_api: Api<Endpoints> = Api::namespaced(client.clone(), "kube-system");
    let endpoints = eventually("the kube-dns endpoints", || async {
        endpoints_api
            .get_opt("kube-dns")
            .await
            .expect("get endpoints")
    })
    .await;
    let subset = &endpoints.subsets.expect("subsets")[0];
    assert_eq!(
        subset.addresses.as_ref().expect("addresses")[0].ip,
        "127.0.0.1"
    );

    // The DNS service itself resolves (the caches have synced before registration).
    let dns = ask_udp(
        server_addr,
        "kube-dns.kube-system.svc.cluster.local",
        TYPE_A,
    )
    .await
    .expect("reply");
    assert_eq!(
        (dns.rcode, dns.addresses.clone()),
        (NOERROR, vec![Ipv4Addr::new(10, 43, 0, 10)])
    );

    // A ClusterIP service, over UDP and TCP.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web = create(
        &services,
        json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }),
    )
    .await;
    let web_ip: Ipv4Addr = web
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("cluster ip")
        .parse()
        .expect("ipv4");
    let reply = eventually("web to resolve", || async {
        ask_udp(server_addr, "web.default.svc.cluster.local", TYPE_A)
            .await
            .filter(|r| r.rcode == NOERROR && !r.addresses.is_empty())
    })
    .await;
    assert_eq!(reply.addresses, [web_ip]);
    assert!(!reply.truncated);
    let reply = ask_tcp(server_addr, "WEB.default.svc.cluster.local.", TYPE_A).await;
    assert_eq!((reply.rcode, reply.addresses), (NOERROR, vec![web_ip]));

    // A headless service: its ready endpoints, and its StatefulSet-style hostnames.
    create(
        &services,
        json!({
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]},
        }),
    )
    .await;
    let default_slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    create(
        &default_slices,
        json!({
            "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.6"], "conditions": {}},
                {"addresses": ["10.42.0.7"], "hostname": "db-2", "conditions": {"ready": false}},
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        }),
    )
    .await;
    let reply = eventually("db to resolve", || async {
        ask_udp(server_addr, "db.default.svc.cluster.local", TYPE_A)
            .await
            .filter(|r| r.addresses.len() >= 2)
    })
    .await;
    assert_eq!(
        reply.addresses,
        [Ipv4Addr::new(10, 42, 0, 5), Ipv4Addr::new(10, 42, 0, 6)]
    );
    let reply = ask_udp(server_addr, "db-0.db.default.svc.cluster.local", TYPE_A)
        .await
        .expect("reply");
    assert_eq!(reply.addresses, [Ipv4Addr::new(10, 42, 0, 5)]);

    // Unknown cluster names: NXDOMAIN with the SOA; never forwarded.
    let before = upstream_queries.load(Ordering::SeqCst);
    let reply = ask_udp(server_addr, "nope.default.svc.cluster.local", TYPE_A)
        .await
        .expect("reply");
    assert_eq!(
        (reply.rcode, reply.answers, reply.authority),
        (NXDOMAIN, 0, 1)
    );
    assert_eq!(upstream_queries.load(Ordering::SeqCst), before);

    // Outside names go to the upstream, over UDP and TCP.
    let reply = ask_udp(server_addr, "example.com", TYPE_A)
        .await
        .expect("reply");
    assert_eq!(
        (reply.rcode, reply.addresses),
        (NOERROR, vec![UPSTREAM_ANSWER])
    );
    let reply = ask_tcp(server_addr, "www.example.org", TYPE_A).await;
    assert_eq!(
        (reply.rcode, reply.addresses),
        (NOERROR, vec![UPSTREAM_ANSWER])
    );
    assert_eq!(upstream_queries.load(Ordering::SeqCst), before + 2);
    // An upstream answer truncated over UDP is fetched again over TCP; a UDP client gets it
    // truncated in turn (over 512 bytes) and a TCP client whole.
    let reply = ask_tcp(server_addr, "big.example.com", TYPE_A).await;
    assert_eq!((reply.rcode, reply.addresses.len()), (NOERROR, 30));
    assert_eq!(upstream_queries.load(Ordering::SeqCst), before + 4);
    let reply = ask_udp(server_addr, "big.example.com", TYPE_A)
        .await
        .expect("reply");
    assert!(reply.truncated);
    assert_eq!(reply.answers, 0);

    // Shutdown: run returns and the slice is withdrawn.
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("run returns after shutdown")
        .expect("join")
        .expect("run ok");
    assert!(
        slices
            .get_opt("kube-dns-test-node-1")
            .await
            .expect("get slice")
            .is_none()
    );
    drop(cluster);
}
