//! Store benchmark: both engines in one run, on this machine.
//!
//! `cargo bench -p capstan-store --bench store` prints one table. etcd is a real server (Debian's
//! `etcd-server`) started on a free loopback port in a temporary dir; SQLite is a file in a
//! temporary dir. Both sync every acknowledged write to disk.
//!
//! Set `CAPSTAN_BENCH_KEYS` to change the number of keys (default 10,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capstan_store::{EtcdStore, ListOptions, SqliteStore, Store};
use capstan_testkit::EtcdServer;
use futures::StreamExt;

/// A pod-sized JSON value of about 2 KiB.
fn pod_value(i: usize) -> Bytes {
    let padding = "x".repeat(1900);
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"pod-{i}","namespace":"bench"}},"spec":{{"padding":"{padding}"}}}}"#
    ))
}

#[derive(Debug, Default)]
struct Figures {
    sequential_per_s: f64,
    concurrent_per_s: f64,
    list_ms: f64,
    watch_p50_ms: f64,
    watch_p99_ms: f64,
}

async fn measure(store: Arc<dyn Store>, keys: usize) -> Figures {
    let mut figures = Figures::default();

    let start = Instant::now();
    for i in 0..keys {
        store
            .create(&format!("/bench/seq/{i:06}"), pod_value(i))
            .await
            .expect("create");
    }
    figures.sequential_per_s = keys as f64 / start.elapsed().as_secs_f64();

    let writers = 8;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..keys).step_by(writers) {
                store
                    .create(&format!("/bench/par/{i:06}"), pod_value(i))
                    .await
                    .expect("create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    figures.concurrent_per_s = keys as f64 / start.elapsed().as_secs_f64();

    let mut runs = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let page = store
            .list("/bench/seq/", ListOptions::default())
            .await
            .expect("list");
        runs.push(start.elapsed());
        assert_eq!(page.items.len(), keys);
    }
    runs.sort();
    figures.list_ms = runs[runs.len() / 2].as_secs_f64() * 1e3;

    // Watch latency: time from just before a write to the watcher holding its event.
    let samples = 1000;
    let after = store.current_revision().await.expect("revision");
    let mut watch = store.watch("/bench/watch/", after).await.expect("watch");
    let receiver = tokio::spawn(async move {
        let mut received = Vec::with_capacity(samples);
        while received.len() < samples {
            match watch.next().await {
                Some(Ok(_)) => received.push(Instant::now()),
                other => panic!("watch ended: {other:?}"),
            }
        }
        received
    });
    let mut sent = Vec::with_capacity(samples);
    for i in 0..samples {
        sent.push(Instant::now());
        store
            .create(&format!("/bench/watch/{i:06}"), pod_value(i))
            .await
            .expect("create");
    }
    let received = receiver.await.expect("receiver");
    let mut latencies: Vec<Duration> = received.iter().zip(&sent).map(|(r, s)| *r - *s).collect();
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    figures.watch_p50_ms = pick(0.50).as_secs_f64() * 1e3;
    figures.watch_p99_ms = pick(0.99).as_secs_f64() * 1e3;
    figures
}

fn main() {
    let keys: usize = std::env::var("CAPSTAN_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = capstan_testkit::temp_dir().expect("temp dir");
        let sqlite = SqliteStore::open(dir.path().join("bench.db")).expect("open sqlite");
        let sqlite = measure(Arc::new(sqlite), keys).await;

        let server = EtcdServer::start().expect("start etcd");
        let etcd = EtcdStore::connect(&[server.endpoint()])
            .await
            .expect("connect etcd");
        let etcd = measure(Arc::new(etcd), keys).await;

        println!("store benchmark: {keys} keys of ~2 KiB each; every write synced to disk");
        println!("| measure | SQLite | etcd |");
        println!("|---|---:|---:|");
        println!(
            "| sequential create, 1 writer (writes/s) | {:.0} | {:.0} |",
            sqlite.sequential_per_s, etcd.sequential_per_s
        );
        println!(
            "| create, 8 concurrent writers (writes/s) | {:.0} | {:.0} |",
            sqlite.concurrent_per_s, etcd.concurrent_per_s
        );
        println!(
            "| list {keys} keys of a prefix (ms, median of 5) | {:.1} | {:.1} |",
            sqlite.list_ms, etcd.list_ms
        );
        println!(
            "| watch delivery write->event p50 (ms) | {:.2} | {:.2} |",
            sqlite.watch_p50_ms, etcd.watch_p50_ms
        );
        println!(
            "| watch delivery write->event p99 (ms) | {:.2} | {:.2} |",
            sqlite.watch_p99_ms, etcd.watch_p99_ms
        );
    });
}
