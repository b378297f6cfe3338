//! End-to-end: `kubectl get -w` sees every change another kubectl makes, in order.

mod support;

use std::time::Duration;

use support::{Cluster, Spawned};

const WAIT: Duration = Duration::from_secs(20);

/// Waits until the watch has printed its initial list (`lines` lines): from then on kubectl watches
/// from the list's resourceVersion, so every later change must show up as an event.
fn settle(watch: &Spawned, lines: usize) -> Vec<String> {
    watch.lines_until(WAIT, |l| l.len() >= lines)
}

fn create_cm(k: &Cluster, ns: &str, name: &str, value: &str) {
    k.ok_stdin(
        &["create", "-f", "-"],
        &format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"{ns}"}},"data":{{"k":"{value}"}}}}"#
        ),
    );
}

#[test]
fn watch_with_events_sees_added_modified_deleted() {
    let k = Cluster::start();
    k.create_namespace("w");
    create_cm(&k, "w", "sentinel", "x");
    let watch = k.spawn_lines(&["get", "cm", "-n", "w", "-w", "--output-watch-events"]);
    let mut lines = settle(&watch, 2);

    create_cm(&k, "w", "c1", "v1");
    k.ok(&[
        "patch",
        "cm",
        "c1",
        "-n",
        "w",
        "-p",
        r#"{"data":{"k":"v2","j":"x"}}"#,
    ]);
    k.ok(&["delete", "cm", "c1", "-n", "w"]);

    lines.extend(watch.lines_until(WAIT, |l| l.len() >= 3));
    let events: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        events,
        [
            vec!["EVENT", "NAME", "DATA"],
            vec!["ADDED", "sentinel", "1"],
            vec!["ADDED", "c1", "1"],
            vec!["MODIFIED", "c1", "2"],
            vec!["DELETED", "c1", "2"],
        ],
        "{lines:#?}"
    );
}

#[test]
fn watch_jsonpath_prints_each_state_in_order() {
    let k = Cluster::start();
    k.create_namespace("w");
    create_cm(&k, "w", "before", "old");
    let watch = k.spawn_lines(&[
        "get",
        "cm",
        "-n",
        "w",
        "-w",
        "-o",
        r#"jsonpath={.metadata.name}={.data.k}{"\n"}"#,
    ]);
    // The watch starts with the current list.
    let initial = settle(&watch, 1);
    assert_eq!(initial, ["before=old"]);

    create_cm(&k, "w", "c1", "v1");
    for value in ["v2", "v3"] {
        k.ok(&[
            "patch",
            "cm",
            "c1",
            "-n",
            "w",
            "-p",
            &format!(r#"{{"data":{{"k":"{value}"}}}}"#),
        ]);
    }
    k.ok(&["delete", "cm", "c1", "-n", "w"]);
    // A change in another namespace is not seen.
    create_cm(&k, "default", "elsewhere", "x");
    k.ok(&[
        "patch",
        "cm",
        "before",
        "-n",
        "w",
        "-p",
        r#"{"data":{"k":"new"}}"#,
    ]);

    let lines = watch.lines_until(WAIT, |l| l.len() >= 5);
    // The deleted object is printed as it last was.
    assert_eq!(lines, ["c1=v1", "c1=v2", "c1=v3", "c1=v3", "before=new"]);
}

#[test]
fn watch_only_sees_matching_labels() {
    let k = Cluster::start();
    k.ok(&[
        "run",
        "web0",
        "--image=x",
        "--labels=app=web",
        "--restart=Never",
    ]);
    let watch = k.spawn_lines(&["get", "pods", "-l", "app=web", "-w", "-o", "name"]);
    let initial = settle(&watch, 1);
    assert_eq!(initial, ["pod/web0"]);
    k.ok(&[
        "run",
        "other",
        "--image=x",
        "--labels=app=db",
        "--restart=Never",
    ]);
    k.ok(&[
        "run",
        "web1",
        "--image=x",
        "--labels=app=web",
        "--restart=Never",
    ]);
    k.ok(&["label", "pod", "web1", "extra=1"]);
    // A last matching pod marks the end: events arrive in order, so once it shows, every event
    // of the earlier writes has been delivered (or filtered out). Other writers (the scheduler
    // noting an unschedulable pod) may add MODIFIED events of the matching pods at any time, so
    // the test counts instead of expecting an exact sequence.
    k.ok(&[
        "run",
        "web2",
        "--image=x",
        "--labels=app=web",
        "--restart=Never",
    ]);
    let lines = watch.lines_until(WAIT, |l| l.iter().any(|x| x == "pod/web2"));
    assert!(
        lines.iter().any(|x| x == "pod/web2"),
        "the watch never showed web2: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|x| ["pod/web0", "pod/web1", "pod/web2"].contains(&x.as_str())),
        "a pod that does not match showed up: {lines:?}"
    );
    let before_web2: Vec<&String> = lines.iter().take_while(|x| *x != "pod/web2").collect();
    assert!(
        before_web2
            .iter()
            .filter(|x| x.as_str() == "pod/web1")
            .count()
            >= 2,
        "web1 created and relabelled: two events at least: {lines:?}"
    );
}

/// A watch from a resourceVersion the (restarted) server's watch cache no longer holds is answered
/// as kube-apiserver answers it: the request succeeds and its one event is an ERROR carrying a 410
/// `Expired` Status, on which clients (client-go's reflector, kube-rs's watcher) list again. An HTTP
/// 410 instead made kube-rs retry the same version forever.
#[test]
fn a_watch_from_a_version_the_cache_lost_gets_a_410_error_event() {
    let mut k = Cluster::start();
    create_cm(&k, "default", "before", "1");
    let old = k.jsonpath(&["cm", "before"], "{.metadata.resourceVersion}");
    assert!(old.parse::<u64>().is_ok(), "resourceVersion {old:?}");
    for i in 0..3 {
        create_cm(&k, "default", &format!("after-{i}"), "2");
    }
    k.restart();
    // (A served watch would stream until its timeout: the test then fails on the ADDED events.)
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old}&timeoutSeconds=5"
    );
    let out = k.ok(&["get", "--raw", &path]);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(events[0]["type"], "ERROR");
    let status = &events[0]["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("too old resource version: {old} ("))),
        "{status}"
    );
}
