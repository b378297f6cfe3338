//! The store contract, checked unchanged against both engines: every case below runs once on an
//! embedded SQLite file and once on a real etcd server started for the test.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capstan_store::{
    EtcdStore, Event, EventKind, ListOptions, Revision, SqliteStore, Store, StoreError, WatchStream,
};
use capstan_testkit::{EtcdServer, TempDir};
use futures::StreamExt;

/// One engine under test, with the means to crash and reopen it.
enum Fixture {
    Sqlite {
        dir: TempDir,
        store: Arc<dyn Store>,
    },
    Etcd {
        server: EtcdServer,
        store: Arc<dyn Store>,
    },
}

impl Fixture {
    async fn sqlite() -> Self {
        let dir = capstan_testkit::temp_dir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("state.db")).expect("open sqlite");
        Fixture::Sqlite {
            dir,
            store: Arc::new(store),
        }
    }

    async fn etcd() -> Self {
        let server = EtcdServer::start().expect("start etcd");
        let store = EtcdStore::connect(&[server.endpoint()])
            .await
            .expect("connect etcd");
        Fixture::Etcd {
            server,
            store: Arc::new(store),
        }
    }

    fn store(&self) -> &dyn Store {
        match self {
            Fixture::Sqlite { store, .. } | Fixture::Etcd { store, .. } => store.as_ref(),
        }
    }

    /// Arguments for `capstan-store-crash-writer` that write to this store.
    fn writer_args(&self) -> [String; 2] {
        match self {
            Fixture::Sqlite { dir, .. } => [
                "sqlite".into(),
                dir.path().join("state.db").display().to_string(),
            ],
            Fixture::Etcd { server, .. } => ["etcd".into(), server.endpoint()],
        }
    }

    /// Crashes the process that holds the data (for SQLite: the writer itself, killed by the caller;
    /// for etcd: the server) and opens the store again.
    async fn crash_and_reopen(&mut self) -> Arc<dyn Store> {
        match self {
            Fixture::Sqlite { dir, .. } => {
                Arc::new(SqliteStore::open(dir.path().join("state.db")).expect("reopen sqlite"))
            }
            Fixture::Etcd { server, .. } => {
                server.kill().expect("kill etcd");
                server.restart().expect("restart etcd");
                Arc::new(
                    EtcdStore::connect(&[server.endpoint()])
                        .await
                        .expect("reconnect etcd"),
                )
            }
        }
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The next event, failing the test if none comes within 10 s.
async fn next_event(watch: &mut WatchStream) -> Event {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is still open")
        .expect("an event, not an error")
}

/// Asserts that nothing arrives for a short while.
async fn assert_quiet(watch: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), watch.next()).await {
        panic!("expected no event, got {item:?}");
    }
}

async fn create_get_and_already_exists(f: Fixture) {
    let s = f.store();
    let before = s.current_revision().await.expect("revision");
    let kv = s
        .create("/registry/pods/default/a", b("one"))
        .await
        .expect("create");
    assert!(kv.mod_revision > before);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(
        s.current_revision().await.expect("revision"),
        kv.mod_revision
    );

    let got = s
        .get("/registry/pods/default/a", None)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got, kv);
    assert_eq!(got.value, b("one"));

    let err = s
        .create("/registry/pods/default/a", b("two"))
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        s.current_revision().await.expect("revision"),
        kv.mod_revision,
        "a failed write adds no revision"
    );
    assert_eq!(
        s.get("/registry/pods/default/missing", None)
            .await
            .expect("get"),
        None
    );
}

async fn update_is_compare_and_swap(f: Fixture) {
    let s = f.store();
    let v1 = s.create("/k", b("v1")).await.expect("create");
    let v2 = s
        .update("/k", b("v2"), v1.mod_revision)
        .await
        .expect("update");
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(v2.create_revision, v1.create_revision);

    let err = s
        .update("/k", b("stale"), v1.mod_revision)
        .await
        .expect_err("must fail");
    match err {
        StoreError::Conflict {
            expected, current, ..
        } => {
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(*current, v2);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        s.get("/k", None)
            .await
            .expect("get")
            .expect("present")
            .value,
        b("v2")
    );

    let err = s.update("/absent", b("x"), 0).await.expect_err("must fail");
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "update never creates: {err:?}"
    );
    assert_eq!(s.get("/absent", None).await.expect("get"), None);
}

async fn delete_is_compare_and_swap(f: Fixture) {
    let s = f.store();
    let v1 = s.create("/k", b("v1")).await.expect("create");
    let v2 = s
        .update("/k", b("v2"), v1.mod_revision)
        .await
        .expect("update");

    let err = s
        .delete("/k", Some(v1.mod_revision))
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(s.get("/k", None).await.expect("get").is_some());

    let deleted = s.delete("/k", Some(v2.mod_revision)).await.expect("delete");
    assert!(deleted.revision > v2.mod_revision);
    assert_eq!(deleted.prev, v2);
    assert_eq!(s.get("/k", None).await.expect("get"), None);

    let err = s.delete("/k", None).await.expect_err("must fail");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    let again = s.create("/k", b("v3")).await.expect("recreate");
    assert!(
        again.create_revision > deleted.revision,
        "a new incarnation has a new create revision"
    );
    s.delete("/k", None).await.expect("unconditional delete");
}

async fn revisions_strictly_increase(f: Fixture) {
    let s = f.store();
    let mut last = s.current_revision().await.expect("revision");
    for i in 0..50 {
        let key = format!("/seq/{i}");
        let kv = s.create(&key, b("x")).await.expect("create");
        assert!(kv.mod_revision > last);
        last = kv.mod_revision;
        let kv = s
            .update(&key, b("y"), kv.mod_revision)
            .await
            .expect("update");
        assert!(kv.mod_revision > last);
        last = kv.mod_revision;
    }
    assert_eq!(s.current_revision().await.expect("revision"), last);
}

async fn list_returns_prefix_in_key_order_with_consistent_pages(f: Fixture) {
    let s = f.store();
    for key in [
        "/a/3", "/a/1", "/a/2", "/a/5", "/a/4", "/a", "/ab", "/b/1", "/a/",
    ] {
        s.create(key, b(key)).await.expect("create");
    }
    let all = s.list("/a/", ListOptions::default()).await.expect("list");
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/", "/a/1", "/a/2", "/a/3", "/a/4", "/a/5"]);
    assert_eq!(all.continue_token, None);
    assert_eq!(all.revision, s.current_revision().await.expect("revision"));

    let first = s
        .list(
            "/a/",
            ListOptions {
                limit: Some(4),
                ..Default::default()
            },
        )
        .await
        .expect("first page");
    assert_eq!(first.items.len(), 4);
    let token = first.continue_token.clone().expect("a continue token");

    // Changes after the first page must not show in later pages: they read at the first page's revision.
    let a5 = s.get("/a/5", None).await.expect("get").expect("present");
    s.update("/a/5", b("changed"), a5.mod_revision)
        .await
        .expect("update");
    s.create("/a/6", b("new")).await.expect("create");
    s.delete("/a/4", None).await.expect("delete");

    let second = s
        .list(
            "/a/",
            ListOptions {
                limit: Some(4),
                continue_token: Some(token),
                ..Default::default()
            },
        )
        .await
        .expect("second page");
    assert_eq!(second.revision, first.revision);
    let keys: Vec<_> = second.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/4", "/a/5"]);
    assert_eq!(second.items[1].value, b("/a/5"));
    assert_eq!(second.continue_token, None);

    let now = s.list("/a/", ListOptions::default()).await.expect("list");
    let keys: Vec<_> = now.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/", "/a/1", "/a/2", "/a/3", "/a/5", "/a/6"]);

    let err = s
        .list(
            "/b/",
            ListOptions {
                continue_token: Some("garbage".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::InvalidContinue(_)), "{err:?}");
    let foreign = first.continue_token.expect("token");
    let err = s
        .list(
            "/b/",
            ListOptions {
                continue_token: Some(foreign),
                ..Default::default()
            },
        )
        .await
        .expect_err("must fail");
    assert!(
        matches!(err, StoreError::InvalidContinue(_)),
        "a token of another prefix: {err:?}"
    );
}

async fn pages_cover_a_large_prefix_exactly_once(f: Fixture) {
    let s = f.store();
    for i in 0..257 {
        s.create(&format!("/many/{i:04}"), b("x"))
            .await
            .expect("create");
    }
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = s
            .list(
                "/many/",
                ListOptions {
                    limit: Some(50),
                    continue_token: token,
                    ..Default::default()
                },
            )
            .await
            .expect("page");
        assert!(page.items.len() <= 50);
        seen.extend(page.items.into_iter().map(|kv| kv.key));
        token = page.continue_token;
        if token.is_none() {
            break;
        }
    }
    let expected: Vec<_> = (0..257).map(|i| format!("/many/{i:04}")).collect();
    assert_eq!(seen, expected);
}

async fn pages_at_a_past_revision_skip_deleted_keys_and_count_only_live_ones(f: Fixture) {
    let s = f.store();
    for i in 0..8 {
        s.create(&format!("/p/{i}"), b("v1")).await.expect("create");
    }
    s.delete("/p/1", None).await.expect("delete");
    s.delete("/p/2", None).await.expect("delete");
    let p3 = s.get("/p/3", None).await.expect("get").expect("present");
    let p3 = s
        .update("/p/3", b("v2"), p3.mod_revision)
        .await
        .expect("update");
    s.update("/p/3", b("v3"), p3.mod_revision)
        .await
        .expect("update");
    let page = |token| {
        s.list(
            "/p/",
            ListOptions {
                limit: Some(2),
                continue_token: token,
                ..Default::default()
            },
        )
    };
    let first = page(None).await.expect("first page");
    let at = first.revision;
    // Later writes must not show in the pages read at the first page's revision.
    s.delete("/p/4", None).await.expect("delete");
    s.create("/p/2", b("again")).await.expect("create");
    let p5 = s.get("/p/5", None).await.expect("get").expect("present");
    s.update("/p/5", b("later"), p5.mod_revision)
        .await
        .expect("update");

    let mut seen: Vec<(String, Vec<u8>)> = first
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.to_vec()))
        .collect();
    let mut token = first.continue_token;
    while let Some(t) = token {
        let next = page(Some(t)).await.expect("page");
        assert_eq!(next.revision, at);
        assert!(next.items.len() <= 2, "{:?}", next.items);
        assert!(
            !next.items.is_empty(),
            "a page with a continue token before it is not empty"
        );
        seen.extend(
            next.items
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.to_vec())),
        );
        token = next.continue_token;
    }
    let expected: Vec<(String, Vec<u8>)> = [
        ("/p/0", "v1"),
        ("/p/3", "v3"),
        ("/p/4", "v1"),
        ("/p/5", "v1"),
        ("/p/6", "v1"),
        ("/p/7", "v1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    assert_eq!(seen, expected);
}

async fn reads_at_past_revisions(f: Fixture) {
    let s = f.store();
    let v1 = s.create("/h/k", b("v1")).await.expect("create");
    let v2 = s
        .update("/h/k", b("v2"), v1.mod_revision)
        .await
        .expect("update");
    s.create("/h/other", b("o")).await.expect("create");
    let deleted = s.delete("/h/k", None).await.expect("delete");

    let at = |r| s.get("/h/k", Some(r));
    assert_eq!(
        at(v1.mod_revision)
            .await
            .expect("get")
            .expect("present")
            .value,
        b("v1")
    );
    assert_eq!(
        at(v2.mod_revision)
            .await
            .expect("get")
            .expect("present")
            .value,
        b("v2")
    );
    assert_eq!(at(deleted.revision).await.expect("get"), None);
    assert_eq!(
        at(v1.mod_revision - 1).await.expect("get"),
        None,
        "before it was created"
    );

    let past = s
        .list(
            "/h/",
            ListOptions {
                revision: Some(v2.mod_revision),
                ..Default::default()
            },
        )
        .await
        .expect("list at past revision");
    assert_eq!(past.revision, v2.mod_revision);
    assert_eq!(past.items.len(), 1);
    assert_eq!(past.items[0], v2);

    let future = s.current_revision().await.expect("revision") + 1000;
    let err = s.get("/h/k", Some(future)).await.expect_err("must fail");
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
    let err = s
        .list(
            "/h/",
            ListOptions {
                revision: Some(future),
                ..Default::default()
            },
        )
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
}

async fn compaction_forgets_history_but_keeps_state(f: Fixture) {
    let s = f.store();
    let a1 = s.create("/c/a", b("a1")).await.expect("create");
    let a2 = s
        .update("/c/a", b("a2"), a1.mod_revision)
        .await
        .expect("update");
    let gone = s.create("/c/gone", b("g")).await.expect("create");
    s.delete("/c/gone", None).await.expect("delete");
    let b1 = s.create("/c/b", b("b1")).await.expect("create");
    let a3 = s
        .update("/c/a", b("a3"), a2.mod_revision)
        .await
        .expect("update");
    let point = b1.mod_revision;

    s.compact(point).await.expect("compact");

    let err = s
        .get("/c/a", Some(a2.mod_revision))
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    let err = s
        .list(
            "/c/",
            ListOptions {
                revision: Some(gone.mod_revision),
                ..Default::default()
            },
        )
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    match s.watch("/c/", a1.mod_revision).await {
        Err(StoreError::Compacted { .. }) => {}
        Err(other) => panic!("expected compacted, got {other:?}"),
        Ok(mut watch) => match watch.next().await {
            Some(Err(StoreError::Compacted { .. })) => {}
            other => panic!("expected compacted, got {other:?}"),
        },
    }

    // The state at the compaction point and everything after it is intact.
    let at_point = s
        .list(
            "/c/",
            ListOptions {
                revision: Some(point),
                ..Default::default()
            },
        )
        .await
        .expect("list at the compaction point");
    let state: BTreeMap<_, _> = at_point
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert_eq!(
        state,
        BTreeMap::from([("/c/a".into(), b("a2")), ("/c/b".into(), b("b1"))])
    );
    assert_eq!(
        s.get("/c/a", None).await.expect("get").expect("present"),
        a3
    );
    assert_eq!(s.get("/c/gone", None).await.expect("get"), None);

    let mut watch = s
        .watch("/c/", point - 1)
        .await
        .expect("watch from the compaction point");
    let first = next_event(&mut watch).await;
    assert_eq!(first.kv, b1);
    let second = next_event(&mut watch).await;
    assert_eq!(second.kind, EventKind::Updated);
    assert_eq!(second.kv, a3);
    assert_eq!(second.prev.as_ref().map(|p| p.value.clone()), Some(b("a2")));

    s.compact(point - 1)
        .await
        .expect("compacting below the point does nothing");
    let err = s
        .compact(s.current_revision().await.expect("revision") + 100)
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
    s.create("/c/after", b("x"))
        .await
        .expect("writes go on after compaction");
}

async fn watch_replays_history_then_follows_live(f: Fixture) {
    let s = f.store();
    let start = s.current_revision().await.expect("revision");
    let v1 = s.create("/w/k", b("v1")).await.expect("create");
    let v2 = s
        .update("/w/k", b("v2"), v1.mod_revision)
        .await
        .expect("update");
    let deleted = s.delete("/w/k", None).await.expect("delete");

    let mut watch = s.watch("/w/", start).await.expect("watch");
    let e = next_event(&mut watch).await;
    assert_eq!(
        (e.kind, e.kv.clone(), e.prev.clone()),
        (EventKind::Created, v1.clone(), None)
    );
    let e = next_event(&mut watch).await;
    assert_eq!(
        (e.kind, e.kv.clone(), e.prev.clone()),
        (EventKind::Updated, v2.clone(), Some(v1))
    );
    let e = next_event(&mut watch).await;
    assert_eq!(e.kind, EventKind::Deleted);
    assert_eq!(e.kv.key, "/w/k");
    assert_eq!(e.kv.mod_revision, deleted.revision);
    assert_eq!(e.kv.create_revision, v2.create_revision);
    assert_eq!(e.prev, Some(v2));

    let live = s.create("/w/live", b("now")).await.expect("create");
    let e = next_event(&mut watch).await;
    assert_eq!((e.kind, e.kv), (EventKind::Created, live.clone()));

    // A watch from "now" sees only what comes after.
    let mut fresh = s.watch("/w/", live.mod_revision).await.expect("watch");
    assert_quiet(&mut fresh).await;
    let next = s
        .update("/w/live", b("later"), live.mod_revision)
        .await
        .expect("update");
    assert_eq!(next_event(&mut fresh).await.kv, next);
    assert_eq!(next_event(&mut watch).await.kv, next);
}

async fn watch_sees_only_its_prefix(f: Fixture) {
    let s = f.store();
    let start = s.current_revision().await.expect("revision");
    let mut watch = s.watch("/p/", start).await.expect("watch");
    s.create("/p", b("exact key, not under the prefix"))
        .await
        .expect("create");
    s.create("/pq/1", b("sibling prefix"))
        .await
        .expect("create");
    s.create("/o/1", b("other")).await.expect("create");
    let mine = s.create("/p/1", b("mine")).await.expect("create");
    assert_eq!(next_event(&mut watch).await.kv, mine);
    assert_quiet(&mut watch).await;
}

async fn watch_across_many_keys_misses_nothing(f: Fixture) {
    let s: Arc<dyn Store> = match &f {
        Fixture::Sqlite { store, .. } | Fixture::Etcd { store, .. } => store.clone(),
    };
    let start = s.current_revision().await.expect("revision");
    let mut watch = s.watch("/many/", start).await.expect("watch");
    let mut writers = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..60 {
                let key = format!("/many/{}", (w * 60 + i) % 97);
                let rev = match s.create(&key, b("c")).await {
                    Ok(kv) => kv.mod_revision,
                    Err(StoreError::AlreadyExists { .. }) => match s.delete(&key, None).await {
                        Ok(deleted) => deleted.revision,
                        Err(StoreError::NotFound { .. }) => continue,
                        Err(e) => panic!("delete: {e}"),
                    },
                    Err(e) => panic!("create: {e}"),
                };
                revisions.push(rev);
                // Writes outside the prefix interleave and must be filtered out.
                s.create(&format!("/noise/{w}/{i}"), b("n"))
                    .await
                    .expect("noise");
            }
            revisions
        }));
    }
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer"));
    }
    acknowledged.sort_unstable();
    let mut received = Vec::new();
    let mut last = start;
    while received.len() < acknowledged.len() {
        let event = next_event(&mut watch).await;
        assert!(
            event.revision() > last,
            "events in strictly increasing revision order"
        );
        assert!(event.kv.key.starts_with("/many/"));
        last = event.revision();
        received.push(event.revision());
    }
    assert_eq!(
        received, acknowledged,
        "every acknowledged write, once, in order"
    );
    assert_quiet(&mut watch).await;
}

async fn slow_watcher_still_gets_every_event(f: Fixture) {
    let s: Arc<dyn Store> = match &f {
        Fixture::Sqlite { store, .. } | Fixture::Etcd { store, .. } => store.clone(),
    };
    let start = s.current_revision().await.expect("revision");
    let mut watch = s.watch("/slow/", start).await.expect("watch");
    // More events than any in-memory buffer holds, written while nobody reads the watch.
    let total = 6000;
    let mut writers = Vec::new();
    for w in 0..16 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            for i in (w..total).step_by(16) {
                s.create(&format!("/slow/{i:05}"), b("x"))
                    .await
                    .expect("create");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut keys = HashSet::new();
    let mut last = start;
    for _ in 0..total {
        let event = next_event(&mut watch).await;
        assert!(event.revision() > last);
        last = event.revision();
        assert!(keys.insert(event.kv.key), "no event twice");
    }
    assert_eq!(keys.len(), total);
    assert_quiet(&mut watch).await;
}

async fn concurrent_writers_lose_no_update(f: Fixture) {
    let s: Arc<dyn Store> = match &f {
        Fixture::Sqlite { store, .. } | Fixture::Etcd { store, .. } => store.clone(),
    };
    s.create("/counter", b("0")).await.expect("create");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..25 {
                loop {
                    let kv = s
                        .get("/counter", None)
                        .await
                        .expect("get")
                        .expect("present");
                    let n: u64 = std::str::from_utf8(&kv.value)
                        .expect("utf8")
                        .parse()
                        .expect("number");
                    match s
                        .update(
                            "/counter",
                            Bytes::from((n + 1).to_string()),
                            kv.mod_revision,
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("update: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.expect("task");
    }
    let kv = s
        .get("/counter", None)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        kv.value,
        b("200"),
        "every increment landed once ({conflicts} conflicts retried)"
    );
}

async fn large_values_round_trip(f: Fixture) {
    let s = f.store();
    let start = s.current_revision().await.expect("revision");
    let value: Bytes = (0..1_572_864u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let kv = s
        .create("/big/one", value.clone())
        .await
        .expect("create 1.5 MiB");
    assert_eq!(
        s.get("/big/one", None)
            .await
            .expect("get")
            .expect("present")
            .value,
        value
    );
    s.create("/big/two", value.clone())
        .await
        .expect("create another");
    let all = s.list("/big/", ListOptions::default()).await.expect("list");
    assert_eq!(all.items.len(), 2);
    assert!(all.items.iter().all(|kv| kv.value == value));
    let mut watch = s.watch("/big/", start).await.expect("watch");
    let event = next_event(&mut watch).await;
    assert_eq!(event.kv, kv);
}

async fn empty_and_odd_keys(f: Fixture) {
    let s = f.store();
    let err = s.create("", b("x")).await.expect_err("must fail");
    assert!(matches!(err, StoreError::InvalidKey(_)), "{err:?}");
    assert!(matches!(
        s.get("", None).await,
        Err(StoreError::InvalidKey(_))
    ));
    assert!(matches!(
        s.update("", b("x"), 1).await,
        Err(StoreError::InvalidKey(_))
    ));
    assert!(matches!(
        s.delete("", None).await,
        Err(StoreError::InvalidKey(_))
    ));

    let odd = [
        "/odd/with space",
        "/odd/new\nline",
        "/odd/ünïcødé/日本",
        "/odd/emoji/🦀",
        "/odd/\u{7f}\u{80}",
        "/odd/max/\u{10FFFF}",
        "/odd//double//slash/",
        "/odd/%2F/..",
    ];
    for key in odd {
        s.create(key, b(key)).await.expect("create odd key");
        assert_eq!(
            s.get(key, None).await.expect("get").expect("present").value,
            b(key)
        );
    }
    let listed = s.list("/odd/", ListOptions::default()).await.expect("list");
    let mut expected: Vec<_> = odd.to_vec();
    expected.sort_unstable(); // byte order, which is also UTF-8 code point order
    let keys: Vec<_> = listed.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, expected);

    // A prefix ending in a multi-byte character.
    let under = s
        .list("/odd/ünïcødé/日", ListOptions::default())
        .await
        .expect("list");
    assert_eq!(under.items.len(), 1);

    // The empty prefix lists every key.
    s.create("zzz-no-slash", b("x")).await.expect("create");
    let everything = s.list("", ListOptions::default()).await.expect("list all");
    assert_eq!(everything.items.len(), odd.len() + 1);
    let paged = s
        .list(
            "",
            ListOptions {
                limit: Some(3),
                ..Default::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(paged.items.len(), 3);
    assert!(paged.continue_token.is_some());
}

async fn acknowledged_writes_survive_kill_9(mut f: Fixture) {
    let exe = env!("CARGO_BIN_EXE_capstan-store-crash-writer");
    let [kind, target] = f.writer_args();
    let mut child = Command::new(exe)
        .args([&kind, &target])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the crash writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut acknowledged: Vec<(String, Revision)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Keep the pipe open until the kill, so that the writer never notices anything before it dies.
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("read");
        let mut parts = line.split(' ');
        if let (Some("ack"), Some(key), Some(rev)) = (parts.next(), parts.next(), parts.next()) {
            acknowledged.push((key.to_owned(), rev.parse().expect("revision")));
        }
        if acknowledged.len() >= 400 || Instant::now() > deadline {
            break;
        }
    }
    assert!(
        acknowledged.len() >= 400,
        "the writer acknowledged only {} writes",
        acknowledged.len()
    );

    // Crash the store while writers are mid-flight: for etcd, the server; for SQLite, the writer
    // process that embeds it.
    let store = match &mut f {
        Fixture::Sqlite { .. } => {
            child.kill().expect("kill -9 the writer");
            child.wait().expect("reap");
            f.crash_and_reopen().await
        }
        Fixture::Etcd { .. } => {
            let store = f.crash_and_reopen().await;
            child.kill().expect("kill -9 the writer");
            child.wait().expect("reap");
            store
        }
    };
    drop(lines);
    for (key, revision) in &acknowledged {
        let kv = store
            .get(key, None)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("lost {key}"));
        assert_eq!(kv.mod_revision, *revision, "{key}");
        assert_eq!(kv.value, Bytes::from(format!("value of {key}")));
    }
    let after = store
        .create("/after-crash", b("ok"))
        .await
        .expect("the store works after the crash");
    assert!(after.mod_revision > acknowledged.iter().map(|(_, r)| *r).max().unwrap_or(0));
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Fixture::sqlite().await).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Fixture::etcd().await).await;
                }
            )*
        }
    };
}

conformance!(
    create_get_and_already_exists,
    update_is_compare_and_swap,
    delete_is_compare_and_swap,
    revisions_strictly_increase,
    list_returns_prefix_in_key_order_with_consistent_pages,
    pages_cover_a_large_prefix_exactly_once,
    pages_at_a_past_revision_skip_deleted_keys_and_count_only_live_ones,
    reads_at_past_revisions,
    compaction_forgets_history_but_keeps_state,
    watch_replays_history_then_follows_live,
    watch_sees_only_its_prefix,
    watch_across_many_keys_misses_nothing,
    slow_watcher_still_gets_every_event,
    concurrent_writers_lose_no_update,
    large_values_round_trip,
    empty_and_odd_keys,
    acknowledged_writes_survive_kill_9,
);
