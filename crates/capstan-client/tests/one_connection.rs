//! The client against a real API server: requests and watches work, and they share one connection.

use std::collections::HashSet;

use capstan_apiserver::testing::TestCluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

/// Established TCP connections from this process to `port`, read from /proc (IPv4 loopback).
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let inodes: HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .expect("list fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let remote_port = cols
                .get(2)
                .and_then(|r| r.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // State 01 = ESTABLISHED; only the client ends (remote = the server port) that are ours.
            remote_port == Some(port)
                && cols.get(3) == Some(&"01")
                && cols.get(9).is_some_and(|inode| inodes.contains(*inode))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_concurrent_requests_share_one_connection() {
    let cluster = TestCluster::start().await;
    let port: u16 = cluster
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("port in the cluster URL");
    let client = capstan_client::from_kubeconfig_yaml(&cluster.admin_kubeconfig())
        .await
        .expect("client");

    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = maps
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("list resourceVersion");
    let mut map_events = maps
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("configmap watch")
        .boxed();
    let nodes: Api<Node> = Api::all(client.clone());
    let _node_events = nodes
        .watch(&WatchParams::default(), "0")
        .await
        .expect("node watch")
        .boxed();

    let creates = (0..20).map(|i| {
        let maps = maps.clone();
        async move {
            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("cm-{i}")},
                "data": {"i": i.to_string()}
            }))
            .expect("configmap");
            maps.create(&PostParams::default(), &cm).await
        }
    });
    for result in futures::future::join_all(creates).await {
        result.expect("create over the shared connection");
    }

    let mut seen = HashSet::new();
    while seen.len() < 20 {
        match map_events.try_next().await.expect("watch stream") {
            Some(WatchEvent::Added(cm)) => {
                seen.insert(cm.metadata.name.expect("name"));
            }
            Some(_) => {}
            None => panic!("the watch ended after {} of 20 events", seen.len()),
        }
    }
    assert_eq!(
        connections_to(port),
        1,
        "two watches and 20 concurrent creates should share one HTTP/2 connection"
    );
}
