//! End-to-end: `capstan server` with its local agent runs real pods on a real containerd, driven by the
//! real kubectl. Images come from the local registry `scripts/images.sh` fills (127.0.0.1:5000).

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::{Cluster, assert_contains};

const BUSYBOX: &str = "127.0.0.1:5000/busybox:latest";
const HTTPSERVER: &str = "127.0.0.1:5000/httpserver:latest";

/// Polls `jsonpath` on `args` until it prints `want` (or fails after `timeout`).
fn wait_for(
    c: &Cluster,
    args: &[&str],
    path: &str,
    want: impl Fn(&str) -> bool,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        let flag = format!("-o=jsonpath={path}");
        all.push(&flag);
        let out = c.run(&all);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && want(&text) {
            return text;
        }
        if Instant::now() > deadline {
            let describe = c.run(&["describe", "pods"]);
            panic!(
                "timed out waiting on {args:?} {path}: last {text:?}\n{}\nserver log tail:\n{}",
                String::from_utf8_lossy(&describe.stdout),
                tail(&c.server_log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A plain HTTP GET from the host; returns the body.
fn http_get(ip: &str, port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect((ip, port)).expect("connect to pod");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(out)
}

#[test]
fn run_to_completion_then_logs() {
    let c = Cluster::start_with_agent();
    c.ok(&[
        "run",
        "hello",
        &format!("--image={BUSYBOX}"),
        "--restart=Never",
        "--",
        "echo",
        "hello",
    ]);
    wait_for(
        &c,
        &["pod", "hello"],
        "{.status.phase}",
        |p| p == "Succeeded",
        Duration::from_secs(60),
    );
    assert_eq!(c.ok(&["logs", "hello"]), "hello\n");
    let state = c.get_json(&["pod", "hello"]);
    let cs = &state["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["terminated"]["reason"], "Completed");
    assert_eq!(cs["state"]["terminated"]["exitCode"], 0);
    assert!(
        state["status"]["podIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.42.")),
        "{state}"
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=hello",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert_contains(&events, reason);
    }
    // A pull error surfaces with the registry's answer.
    c.ok(&[
        "run",
        "nope",
        "--image=127.0.0.1:5000/does-not-exist:1",
        "--restart=Never",
    ]);
    let reason = wait_for(
        &c,
        &["pod", "nope"],
        "{.status.containerStatuses[0].state.waiting.reason}",
        |r| r == "ErrImagePull" || r == "ImagePullBackOff",
        Duration::from_secs(60),
    );
    assert!(!reason.is_empty());
    // The registry's answer is in the message (ErrImagePull, and ImagePullBackOff after it).
    wait_for(
        &c,
        &["pod", "nope"],
        "{.status.containerStatuses[0].state.waiting.message}",
        |m| m.contains("does-not-exist") && m.contains("not found"),
        Duration::from_secs(30),
    );
}

/// Applies Deployment `web` (`replicas` httpserver pods, ready when they answer on 8080) and `more`
/// (further YAML documents, each starting with `---`).
fn apply_web(c: &Cluster, replicas: u32, more: &str) {
    c.apply_stdin(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {HTTPSERVER}
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
{more}"#
    ));
}

#[test]
fn deployment_with_readiness_serves_exec_and_logs() {
    let c = Cluster::start_with_agent();
    apply_web(&c, 2, "");
    wait_for(
        &c,
        &["pods", "-l", "app=web"],
        "{.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        |s| s == "True True",
        Duration::from_secs(90),
    );
    let names = c.jsonpath(&["pods", "-l", "app=web"], "{.items[*].metadata.name}");
    let ips = c.jsonpath(&["pods", "-l", "app=web"], "{.items[*].status.podIP}");
    for (name, ip) in names.split_whitespace().zip(ips.split_whitespace()) {
        assert_eq!(http_get(ip, 8080, "/").trim(), "capstan httpserver");
        assert_eq!(http_get(ip, 8080, "/cgi-bin/hostname").trim(), name);
        // exec runs in that container.
        assert_eq!(
            c.ok(&["exec", name, "--", "cat", "/www/index.html"]).trim(),
            "capstan httpserver"
        );
        assert_eq!(c.ok(&["exec", name, "--", "hostname"]).trim(), name);
    }
    let first = names.split_whitespace().next().expect("a pod");
    // A failing command's exit code comes back through kubectl.
    let out = c.run(&["exec", first, "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // logs -f streams: the start line, then a request's access line appears while following.
    let follow = c.spawn_lines(&["logs", "-f", first]);
    let lines = follow.lines_until(Duration::from_secs(20), |l| !l.is_empty());
    assert_contains(&lines.join("\n"), "listening on :8080");
    // cp works (tar over exec).
    let local = c.write_file("copied.txt", "copied through kubectl cp\n");
    c.ok(&[
        "cp",
        local.to_str().expect("utf8"),
        &format!("{first}:/tmp/copied.txt"),
    ]);
    assert_eq!(
        c.ok(&["exec", first, "--", "cat", "/tmp/copied.txt"]),
        "copied through kubectl cp\n"
    );
}

/// A plain HTTP GET that may fail (for addresses the proxy may not forward yet).
fn try_http_get(ip: &str, port: u16, path: &str) -> std::io::Result<String> {
    let addr = std::net::SocketAddr::new(
        ip.parse()
            .map_err(|_| std::io::Error::other(format!("bad address {ip}")))?,
        port,
    );
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default())
}

/// Services: the node's proxy forwards a cluster IP and a node port to the ready pods (from the host
/// and from a pod, including a pod reaching itself), the `kubernetes` Service reaches the API server,
/// a LoadBalancer Service answers on the node's address, and a Service left without endpoints refuses
/// connections instead of hanging.
#[test]
fn services_forward_cluster_ips_and_node_ports_to_ready_pods() {
    let c = Cluster::start_with_agent();
    apply_web(
        &c,
        2,
        "---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
",
    );
    wait_for(
        &c,
        &["pods", "-l", "app=web"],
        "{.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        |s| s == "True True",
        Duration::from_secs(90),
    );
    let names: std::collections::BTreeSet<String> = c
        .jsonpath(&["pods", "-l", "app=web"], "{.items[*].metadata.name}")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let cluster_ip = c.jsonpath(&["service", "web"], "{.spec.clusterIP}");
    let node_port: u16 = c
        .jsonpath(&["service", "web"], "{.spec.ports[0].nodePort}")
        .parse()
        .expect("node port");
    let node_ip = c.jsonpath(
        &["nodes"],
        "{.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
    );
    let iptables = || {
        let out = std::process::Command::new("iptables-save")
            .output()
            .expect("iptables-save");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // From the host: the cluster IP spreads connections over both pods.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen != names {
        if let Ok(name) = try_http_get(&cluster_ip, 80, "/cgi-bin/hostname") {
            assert!(names.contains(&name), "unexpected answer {name:?}");
            seen.insert(name);
        }
        assert!(
            Instant::now() < deadline,
            "{cluster_ip}:80 reached only {seen:?} of {names:?}; rules:\n{}",
            iptables()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The node port, on the node's address.
    let answer = try_http_get(&node_ip, node_port, "/cgi-bin/hostname")
        .unwrap_or_else(|e| panic!("node port {node_ip}:{node_port}: {e}\n{}", iptables()));
    assert!(names.contains(&answer), "{answer:?}");

    // From inside a pod, through its own Service: itself (hairpin) and the other pod.
    let first = names.iter().next().expect("a pod");
    let url = format!("http://{cluster_ip}/cgi-bin/hostname");
    let mut from_pod = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let out = c.ok(&["exec", first, "--", "timeout", "10", "wget", "-qO-", &url]);
        assert!(names.contains(out.trim()), "{out:?}");
        from_pod.insert(out.trim().to_owned());
        if from_pod == names {
            break;
        }
    }
    assert_eq!(from_pod, names);

    // The `kubernetes` Service leads to the API server (its certificate names the service IP).
    assert_eq!(
        c.ok(&[
            "--server",
            "https://10.43.0.1:443",
            "get",
            "--raw",
            "/readyz"
        ]),
        "ok"
    );

    // A LoadBalancer Service gets the node's address (k3s's ServiceLB) and answers on it.
    c.ok(&[
        "expose",
        "deployment",
        "web",
        "--name=web-lb",
        "--type=LoadBalancer",
        "--port=18081",
        "--target-port=8080",
    ]);
    let ingress = wait_for(
        &c,
        &["service", "web-lb"],
        "{.status.loadBalancer.ingress[*].ip}",
        |ip| !ip.is_empty(),
        Duration::from_secs(30),
    );
    assert_eq!(ingress, node_ip);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match try_http_get(&ingress, 18081, "/cgi-bin/hostname") {
            Ok(name) if names.contains(&name) => break,
            other => assert!(
                Instant::now() < deadline,
                "{ingress}:18081 answered {other:?}; rules:\n{}",
                iptables()
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // No endpoints left: connections are refused at once, not left to time out.
    c.ok(&["scale", "deployment", "web", "--replicas=0"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match try_http_get(&cluster_ip, 80, "/cgi-bin/hostname") {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => assert!(
                Instant::now() < deadline,
                "still {other:?} with no endpoints; rules:\n{}",
                iptables()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Cluster DNS: pods get `nameserver 10.43.0.10` with the Kubernetes search path, and the server's
/// DNS (reached through the `kube-dns` Service and the node's proxy) answers Services, headless
/// Services' endpoints, short names through the search path, and NXDOMAIN for unknown names.
#[test]
fn pods_resolve_services_through_cluster_dns() {
    let c = Cluster::start_with_agent();
    apply_web(
        &c,
        1,
        "---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
",
    );
    wait_for(
        &c,
        &["pods", "-l", "app=web"],
        "{.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        |s| s == "True",
        Duration::from_secs(90),
    );
    let pod = c.jsonpath(&["pods", "-l", "app=web"], "{.items[0].metadata.name}");
    let pod_ip = c.jsonpath(&["pods", "-l", "app=web"], "{.items[0].status.podIP}");
    let cluster_ip = c.jsonpath(&["service", "web"], "{.spec.clusterIP}");
    assert_eq!(
        c.jsonpath(
            &["service", "kube-dns", "-n", "kube-system"],
            "{.spec.clusterIP}"
        ),
        "10.43.0.10"
    );
    let resolv = c.ok(&["exec", &pod, "--", "cat", "/etc/resolv.conf"]);
    assert_contains(&resolv, "nameserver 10.43.0.10");
    assert_contains(
        &resolv,
        "search default.svc.cluster.local svc.cluster.local cluster.local",
    );
    assert_contains(&resolv, "options ndots:5");

    let lookup = |name: &str| c.run(&["exec", &pod, "--", "nslookup", name]);
    // The first answers may wait for the proxy to program the kube-dns Service.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = lookup("web.default.svc.cluster.local");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains(&cluster_ip) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer for web.default.svc.cluster.local: {text}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&c.server_log(), 30)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for (name, want) in [
        ("web", cluster_ip.as_str()),
        ("kubernetes.default.svc.cluster.local", "10.43.0.1"),
        ("web-headless.default.svc.cluster.local", pod_ip.as_str()),
    ] {
        // busybox's nslookup asks every search domain at once and exits 1 if any of them is
        // NXDOMAIN, even when one answered: judge by the answer. (It searches only dotless names,
        // whatever ndots says, so partial names like `web.default` are not tried here.)
        let out = lookup(name);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_contains(&text, &format!("Address: {want}"));
    }
    let missing = lookup("nope.default.svc.cluster.local");
    assert!(!missing.status.success(), "{missing:?}");
    assert_contains(
        &format!(
            "{}{}",
            String::from_utf8_lossy(&missing.stdout),
            String::from_utf8_lossy(&missing.stderr)
        ),
        "NXDOMAIN",
    );
}

/// Polls `kubectl <args>` until it succeeds with output `want` accepts.
fn wait_output(
    c: &Cluster,
    args: &[&str],
    want: impl Fn(&str) -> bool,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = c.run(args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && want(&text) {
            return text;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting on {args:?}: last {text:?} {}\nserver log tail:\n{}",
                String::from_utf8_lossy(&out.stderr),
                tail(&c.server_log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A CPU quantity as `kubectl top` prints it (`123m`) in millicores.
fn millicores(text: &str) -> u64 {
    text.strip_suffix('m')
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("not millicores: {text:?}"))
}

#[test]
fn kubectl_top_shows_node_and_pod_usage_from_the_kubelet() {
    let c = Cluster::start_with_agent();
    // One container spins under a 300m limit, the other sleeps: top must tell them apart.
    c.apply_stdin(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: burner, labels: {{app: burner}}}}
spec:
  containers:
  - name: spin
    image: {BUSYBOX}
    command: ["sh", "-c", "while true; do :; done"]
    resources: {{limits: {{cpu: 300m, memory: 64Mi}}}}
  - name: idle
    image: {BUSYBOX}
    command: ["sleep", "3600"]
"#
    ));
    wait_for(
        &c,
        &["pod", "burner"],
        "{.status.phase}",
        |p| p == "Running",
        Duration::from_secs(60),
    );
    // Discovery lists the group, so kubectl does not answer "Metrics API not available".
    assert_contains(
        &c.ok(&["api-resources", "--api-group=metrics.k8s.io"]),
        "PodMetrics",
    );
    let node = c.jsonpath(&["nodes"], "{.items[0].metadata.name}");

    // kubectl top node: NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%).
    let top = wait_output(
        &c,
        &["top", "node"],
        |t| t.contains(&node),
        Duration::from_secs(30),
    );
    let row = support::table_rows(&top)
        .into_iter()
        .find(|r| r[0] == node)
        .expect("the node's row");
    assert!(millicores(&row[1]) > 0, "{top}");
    assert!(
        row[3].ends_with("Mi") && row[3].trim_end_matches("Mi").parse::<u64>().expect("MiB") > 0,
        "{top}"
    );

    // kubectl top pod --containers: the spinning container uses CPU near its limit, the sleeping
    // one next to none. The spinner's rate needs a window that includes some spinning: poll.
    let top = wait_output(
        &c,
        &["top", "pod", "burner", "--containers"],
        |t| {
            support::table_rows(t).iter().any(|r| {
                r.len() >= 4 && r[1] == "spin" && r[2].ends_with('m') && millicores(&r[2]) >= 100
            })
        },
        Duration::from_secs(40),
    );
    let rows = support::table_rows(&top);
    let idle = rows
        .iter()
        .find(|r| r[1] == "idle")
        .expect("the idle container's row");
    assert!(millicores(&idle[2]) < 50, "{top}");
    let spin = rows
        .iter()
        .find(|r| r[1] == "spin")
        .expect("the spinning container's row");
    // Its limit holds it (cgroup quota), with room for the rate's window edges.
    assert!(millicores(&spin[2]) <= 400, "{top}");

    // The raw documents are metrics.k8s.io's.
    let raw = c.ok(&[
        "get",
        "--raw",
        &format!("/apis/metrics.k8s.io/v1beta1/nodes/{node}"),
    ]);
    let doc: serde_json::Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(doc["kind"], "NodeMetrics");
    assert_eq!(doc["metadata"]["name"], node.as_str());
    assert!(
        doc["window"].as_str().is_some_and(|w| w.ends_with('s')),
        "{doc}"
    );
    let list = c.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dburner",
    ]);
    let list: serde_json::Value = serde_json::from_str(&list).expect("json");
    assert_eq!(list["kind"], "PodMetricsList");
    assert_eq!(list["items"][0]["metadata"]["name"], "burner");
    assert_eq!(list["items"][0]["metadata"]["labels"]["app"], "burner");
    // busybox's working set is under 1 MiB (top prints 0Mi) but not nothing.
    for container in list["items"][0]["containers"]
        .as_array()
        .expect("containers")
    {
        let memory = container["usage"]["memory"].as_str().expect("memory");
        assert!(memory != "0" && memory.ends_with("Ki"), "{container}");
    }

    // A pod that does not exist is NotFound, worded as metrics-server words it.
    let err = c.fails(&["top", "pod", "missing"]);
    assert_contains(
        &err,
        "podmetrics.metrics.k8s.io \"default/missing\" not found",
    );
    // The group is read-only.
    let err = c.fails(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/nodes?watch=true",
    ]);
    assert_contains(&err, "MethodNotAllowed");
}

#[test]
fn local_path_volumes_bind_on_first_use_and_keep_data_across_pods() {
    let c = Cluster::start_with_agent();
    // k3s's default class is there from the start.
    let classes = c.ok(&["get", "sc"]);
    let row = support::table_rows(&classes)
        .into_iter()
        .find(|r| r[0] == "local-path")
        .unwrap_or_else(|| panic!("no local-path class: {classes}"));
    assert_eq!(
        row[1..5],
        [
            "(default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer"
        ],
        "{classes}"
    );

    // A claim without a class gets the default one and waits for its first consumer.
    c.apply_stdin(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: scratch}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 64Mi}}\n",
    );
    assert_eq!(
        c.jsonpath(&["pvc", "scratch"], "{.spec.storageClassName}"),
        "local-path"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.jsonpath(&["pvc", "scratch"], "{.status.phase}"),
        "Pending"
    );

    // A StatefulSet's claim templates: one claim per pod, bound once the pod is scheduled.
    c.apply_stdin(&format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 1
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: {BUSYBOX}
        command: ["sh", "-c", "date >> /data/starts; sleep 3600"]
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 128Mi}}}}
"#
    ));
    wait_for(
        &c,
        &["pod", "db-0"],
        "{.status.phase}",
        |p| p == "Running",
        Duration::from_secs(90),
    );
    assert_eq!(
        c.jsonpath(&["pvc", "data-db-0"], "{.status.phase}"),
        "Bound"
    );
    assert_eq!(
        c.jsonpath(&["pvc", "data-db-0"], "{.metadata.labels.app}"),
        "db"
    );
    let volume = c.jsonpath(&["pvc", "data-db-0"], "{.spec.volumeName}");
    let uid = c.jsonpath(&["pvc", "data-db-0"], "{.metadata.uid}");
    assert_eq!(volume, format!("pvc-{uid}"));
    assert_eq!(
        c.jsonpath(&["pvc", "data-db-0"], "{.status.capacity.storage}"),
        "128Mi"
    );
    let pv = c.ok(&["get", "pv", &volume]);
    let row = &support::table_rows(&pv)[0];
    assert_eq!(
        row[1..7],
        [
            "128Mi",
            "RWO",
            "Delete",
            "Bound",
            "default/data-db-0",
            "local-path"
        ],
        "{pv}"
    );
    // The data lives in the agent's storage dir on the host, under k3s's directory name.
    let host_dir = c.jsonpath(&["pv", &volume], "{.spec.hostPath.path}");
    assert!(
        host_dir.ends_with(&format!("/storage/{volume}_default_data-db-0")),
        "{host_dir}"
    );
    c.ok(&["exec", "db-0", "--", "sh", "-c", "echo kept > /data/marker"]);
    assert_eq!(
        std::fs::read_to_string(format!("{host_dir}/marker")).expect("marker on the host"),
        "kept\n"
    );

    // The replacement pod gets the same claim and finds the data.
    let first_uid = c.jsonpath(&["pod", "db-0"], "{.metadata.uid}");
    c.ok(&["delete", "pod", "db-0", "--wait=false"]);
    wait_for(
        &c,
        &["pod", "db-0"],
        "{.metadata.uid} {.status.phase}",
        |s| !s.starts_with(&first_uid) && s.ends_with("Running"),
        Duration::from_secs(90),
    );
    assert_eq!(
        c.ok(&["exec", "db-0", "--", "cat", "/data/marker"]),
        "kept\n"
    );
    let starts = c.ok(&["exec", "db-0", "--", "cat", "/data/starts"]);
    assert_eq!(starts.lines().count(), 2, "{starts}");

    // The standalone claim binds when a pod uses it; deleting both deletes the volume (Delete).
    c.apply_stdin(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: user}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {BUSYBOX}, command: [sleep, '3600'], volumeMounts: [{{name: s, mountPath: /s}}]}}\n  volumes: [{{name: s, persistentVolumeClaim: {{claimName: scratch}}}}]\n"
    ));
    wait_for(
        &c,
        &["pod", "user"],
        "{.status.phase}",
        |p| p == "Running",
        Duration::from_secs(90),
    );
    let scratch_volume = c.jsonpath(&["pvc", "scratch"], "{.spec.volumeName}");
    assert!(scratch_volume.starts_with("pvc-"), "{scratch_volume}");
    let scratch_dir = c.jsonpath(&["pv", &scratch_volume], "{.spec.hostPath.path}");
    assert!(std::path::Path::new(&scratch_dir).is_dir(), "{scratch_dir}");
    // Deleting a claim a running pod uses waits for the pod (pvc-protection): nothing is released.
    assert_eq!(
        c.jsonpath(&["pvc", "scratch"], "{.metadata.finalizers}"),
        r#"["kubernetes.io/pvc-protection"]"#
    );
    c.ok(&["delete", "pvc", "scratch", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        c.jsonpath(&["pvc", "scratch"], "{.status.phase}"),
        "Bound",
        "a claim in use must stay"
    );
    assert!(
        !c.jsonpath(&["pvc", "scratch"], "{.metadata.deletionTimestamp}")
            .is_empty()
    );
    c.ok(&["get", "pv", &scratch_volume]);
    assert!(std::path::Path::new(&scratch_dir).is_dir(), "{scratch_dir}");
    c.ok(&["delete", "pod", "user"]);
    wait_output(
        &c,
        &["get", "pv", "-o", "name"],
        |t| !t.contains(&scratch_volume),
        Duration::from_secs(30),
    );
    // ... and its node's kubelet removes the data.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&scratch_dir).exists() {
        assert!(Instant::now() < deadline, "{scratch_dir} still there");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(std::path::Path::new(&host_dir).is_dir(), "{host_dir}");
    // The StatefulSet's volume stays.
    c.ok(&["get", "pv", &volume]);
}

#[test]
fn crash_loops_oom_kills_and_liveness_restarts() {
    let c = Cluster::start_with_agent();
    c.apply_stdin(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  containers:
  - {{name: c, image: {BUSYBOX}, command: [sh, -c, "echo dying; exit 1"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: oom}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {BUSYBOX}
    command: [sh, -c, "x=a; while true; do x=$x$x$x$x; done"]
    resources: {{limits: {{memory: 20Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: live}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {BUSYBOX}
    command: [sleep, "3600"]
    livenessProbe: {{exec: {{command: [cat, /nonexistent]}}, periodSeconds: 1, failureThreshold: 2}}
"#
    ));
    wait_for(
        &c,
        &["pod", "crash"],
        "{.status.containerStatuses[0].state.waiting.reason}",
        |r| r == "CrashLoopBackOff",
        Duration::from_secs(60),
    );
    wait_for(
        &c,
        &["pod", "crash"],
        "{.status.containerStatuses[0].restartCount}",
        |n| n.parse::<u32>().is_ok_and(|n| n >= 2),
        Duration::from_secs(60),
    );
    assert_eq!(c.ok(&["logs", "crash", "--previous"]), "dying\n");
    let last = c.jsonpath(
        &["pod", "crash"],
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(last, "1");

    wait_for(
        &c,
        &["pod", "oom"],
        "{.status.containerStatuses[0].state.terminated.reason}",
        |r| r == "OOMKilled",
        Duration::from_secs(60),
    );
    assert_eq!(c.jsonpath(&["pod", "oom"], "{.status.phase}"), "Failed");

    wait_for(
        &c,
        &["pod", "live"],
        "{.status.containerStatuses[0].restartCount}",
        |n| n.parse::<u32>().is_ok_and(|n| n >= 1),
        Duration::from_secs(60),
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=live",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert_contains(&events, "failed liveness probe, will be restarted");
}

#[test]
fn config_secrets_and_downward_api_reach_the_container() {
    let c = Cluster::start_with_agent();
    c.apply_stdin(&format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg}}
data: {{greeting: hi, file.txt: "from a configmap"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: sec}}
stringData: {{password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {{name: env, labels: {{app: env-test}}}}
spec:
  restartPolicy: Never
  initContainers:
  - {{name: init, image: {BUSYBOX}, command: [sh, -c, "echo from-init > /work/init.txt"], volumeMounts: [{{name: work, mountPath: /work}}]}}
  containers:
  - name: c
    image: {BUSYBOX}
    command: [sh, -c, "echo $GREETING $PASSWORD $POD_NAME $NODE $(EXPANDED); cat /cfg/file.txt; echo; cat /sec/password; echo; cat /info/labels; echo; cat /work/init.txt; echo $KUBERNETES_SERVICE_HOST"]
    env:
    - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: sec, key: password}}}}}}
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    - {{name: EXPANDED, value: "x-$(GREETING)"}}
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
    - {{name: sec, mountPath: /sec}}
    - {{name: info, mountPath: /info}}
    - {{name: work, mountPath: /work}}
  volumes:
  - {{name: cfg, configMap: {{name: cfg}}}}
  - {{name: sec, secret: {{secretName: sec}}}}
  - {{name: info, downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}}}
  - {{name: work, emptyDir: {{}}}}
"#
    ));
    wait_for(
        &c,
        &["pod", "env"],
        "{.status.phase}",
        |p| p == "Succeeded",
        Duration::from_secs(60),
    );
    let node = c.jsonpath(&["pod", "env"], "{.spec.nodeName}");
    let logs = c.ok(&["logs", "env"]);
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("hi s3cret env {node} x-hi").as_str()),
        "{logs}"
    );
    assert_eq!(
        &lines[1..6],
        [
            "from a configmap",
            "s3cret",
            "app=\"env-test\"",
            "from-init",
            "10.43.0.1"
        ],
        "{logs}"
    );
    // A missing ConfigMap holds the container with the kubelet's reason.
    c.ok(&["run", "missing", &format!("--image={BUSYBOX}"), "--restart=Never", "--overrides",
        r#"{"spec":{"containers":[{"name":"missing","image":"127.0.0.1:5000/busybox:latest","env":[{"name":"X","valueFrom":{"configMapKeyRef":{"name":"absent","key":"k"}}}]}]}}"#]);
    wait_for(
        &c,
        &["pod", "missing"],
        "{.status.containerStatuses[0].state.waiting.reason}",
        |r| r == "CreateContainerConfigError",
        Duration::from_secs(60),
    );
}

#[test]
fn deleting_a_pod_stops_its_containers_within_the_grace_period() {
    let c = Cluster::start_with_agent();
    c.apply_stdin(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: sleeper}}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - {{name: c, image: {BUSYBOX}, command: [sleep, "3600"]}}
"#
    ));
    wait_for(
        &c,
        &["pod", "sleeper"],
        "{.status.phase}",
        |p| p == "Running",
        Duration::from_secs(60),
    );
    let uid = c.jsonpath(&["pod", "sleeper"], "{.metadata.uid}");
    let socket = c.dir().join("data/agent/containerd/containerd.sock");
    let containers = || {
        let out = std::process::Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["-n", "k8s.io", "containers", "ls"])
            .output()
            .expect("run ctr");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let labelled = || {
        let out = std::process::Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args([
                "-n",
                "k8s.io",
                "containers",
                "ls",
                &format!("labels.\"io.kubernetes.pod.uid\"=={uid}"),
            ])
            .output()
            .expect("run ctr");
        String::from_utf8_lossy(&out.stdout).lines().skip(1).count()
    };
    assert!(
        labelled() >= 2,
        "sandbox and container exist: {}",
        containers()
    );
    let started = Instant::now();
    // `sleep` as PID 1 ignores SIGTERM: the kubelet must SIGKILL it when the grace period ends.
    c.ok(&["delete", "pod", "sleeper", "--timeout=30s"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "deletion took {took:?}");
    assert_eq!(labelled(), 0, "containers left behind: {}", containers());
}

/// `capstan agent` joins a control-plane-only server with the join token (TLS bootstrap through
/// CertificateSigningRequests), registers its node and runs pods whose logs kubectl reads through it.
/// A `capstan agent` joined to a cluster's server on this machine. On drop its pods are stopped
/// (by it: a container left running would keep its address on the shared bridge), then it is killed
/// with its containerd and shims (they outlive it).
struct Agent(
    std::process::Child,
    std::path::PathBuf,
    std::process::Command,
);

impl Agent {
    fn spawn(c: &Cluster, dir: &std::path::Path, node: &str, log: &str) -> std::process::Child {
        let token = std::fs::read_to_string(c.dir().join("data/token")).expect("join token");
        let log = std::fs::File::create(c.dir().join(log)).expect("agent log");
        std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args([
                "agent",
                "--server",
                &format!("https://127.0.0.1:{}", c.port()),
                "--token",
                token.trim(),
            ])
            .arg("--data-dir")
            .arg(dir)
            .args(["--node-name", node])
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start capstan agent")
    }

    /// Starts the agent and waits until its node is Ready.
    fn join(c: &Cluster, dir: &std::path::Path, node: &str, log: &str) -> Agent {
        let mut cleanup = c.command();
        cleanup.args([
            "delete",
            "deployments,pods",
            "--all",
            "--grace-period=1",
            "--timeout=30s",
        ]);
        let mut agent = Agent(Self::spawn(c, dir, node, log), dir.to_owned(), cleanup);
        let agent_log = || std::fs::read_to_string(c.dir().join(log)).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = c.run(&[
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            if String::from_utf8_lossy(&ready.stdout).trim() == "True" {
                return agent;
            }
            if let Ok(Some(status)) = agent.0.try_wait() {
                panic!("agent exited ({status}):\n{}", agent_log());
            }
            assert!(
                Instant::now() < deadline,
                "node not Ready:\n{}",
                agent_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.2.output();
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::process::Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(self.1.display().to_string())
            .status();
    }
}

#[test]
fn an_agent_joins_with_the_token_and_runs_pods() {
    let c = Cluster::start();
    let agent_dir = c.dir().join("data/agent");
    let mut agent = Agent::join(&c, &agent_dir, "joined-1", "agent.log");
    // Both certificates came through CSRs, approved and signed by the controller manager.
    let csrs = c.ok(&[
        "get",
        "csr",
        "-o",
        "jsonpath={range .items[*]}{.spec.signerName} {.status.conditions[0].type}{\"\\n\"}{end}",
    ]);
    assert_contains(
        &csrs,
        "kubernetes.io/kube-apiserver-client-kubelet Approved",
    );
    assert_contains(&csrs, "kubernetes.io/kubelet-serving Approved");
    c.ok(&[
        "run",
        "joined",
        &format!("--image={BUSYBOX}"),
        "--restart=Never",
        "--",
        "echo",
        "from the joined node",
    ]);
    wait_for(
        &c,
        &["pod", "joined"],
        "{.status.phase}",
        |p| p == "Succeeded",
        Duration::from_secs(60),
    );
    assert_eq!(
        c.jsonpath(&["pod", "joined"], "{.spec.nodeName}"),
        "joined-1"
    );
    assert_eq!(c.ok(&["logs", "joined"]), "from the joined node\n");
    // A wrong token is refused before anything is written.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args([
            "agent",
            "--server",
            &format!("https://127.0.0.1:{}", c.port()),
        ])
        .args([
            "--token",
            "K100000000000000000000000000000000000000000000000000000000000000000::server:nope",
        ])
        .arg("--data-dir")
        .arg(c.dir().join("bad-agent"))
        .output()
        .expect("run agent");
    assert!(!bad.status.success());
    assert_contains(
        &String::from_utf8_lossy(&bad.stderr),
        "does not match the hash in the join token",
    );
    c.ok(&["delete", "pod", "joined", "--timeout=30s"]);

    // A restarted agent adopts the running pods: same container, no restart.
    c.ok(&[
        "run",
        "keeper",
        &format!("--image={BUSYBOX}"),
        "--",
        "sleep",
        "3600",
    ]);
    wait_for(
        &c,
        &["pod", "keeper"],
        "{.status.phase}",
        |p| p == "Running",
        Duration::from_secs(60),
    );
    let before = c.jsonpath(
        &["pod", "keeper"],
        "{.status.containerStatuses[0].containerID}",
    );
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    agent.0 = Agent::spawn(&c, &agent_dir, "joined-1", "agent2.log");
    let agent2_log = std::fs::read_to_string(c.dir().join("agent2.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(c.dir().join("agent2.log"))
        .unwrap_or_default()
        .contains("adopting the running containerd")
    {
        assert!(
            Instant::now() < deadline,
            "agent did not adopt containerd:\n{agent2_log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Give the new agent a few passes over the pod, then check nothing was restarted.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        c.jsonpath(
            &["pod", "keeper"],
            "{.status.containerStatuses[0].containerID}"
        ),
        before
    );
    assert_eq!(
        c.jsonpath(
            &["pod", "keeper"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    assert_eq!(c.jsonpath(&["pod", "keeper"], "{.status.phase}"), "Running");
    c.ok(&[
        "delete",
        "pod",
        "keeper",
        "--grace-period=1",
        "--timeout=30s",
    ]);
    drop(agent);
}

/// The agent supervises containerd: killed, it comes back, running containers survive (they live in
/// their shims), and new pods start.
#[test]
fn containerd_is_restarted_when_it_dies() {
    let c = Cluster::start_with_agent();
    c.ok(&[
        "run",
        "survivor",
        &format!("--image={BUSYBOX}"),
        "--",
        "sleep",
        "3600",
    ]);
    wait_for(
        &c,
        &["pod", "survivor"],
        "{.status.phase}",
        |p| p == "Running",
        Duration::from_secs(60),
    );
    let before = c.jsonpath(
        &["pod", "survivor"],
        "{.status.containerStatuses[0].containerID}",
    );
    let config = c.dir().join("data/agent/containerd/config.toml");
    let pattern = format!("containerd --config {}", config.display());
    let killed = std::process::Command::new("pkill")
        .args(["-9", "-f", &pattern])
        .status()
        .expect("pkill");
    assert!(killed.success(), "no containerd matched {pattern}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.server_log().contains("containerd exited; restarting it") {
        assert!(
            Instant::now() < deadline,
            "no restart logged:\n{}",
            tail(&c.server_log(), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.ok(&[
        "run",
        "after",
        &format!("--image={BUSYBOX}"),
        "--restart=Never",
        "--",
        "echo",
        "after restart",
    ]);
    wait_for(
        &c,
        &["pod", "after"],
        "{.status.phase}",
        |p| p == "Succeeded",
        Duration::from_secs(60),
    );
    assert_eq!(c.ok(&["logs", "after"]), "after restart\n");
    assert_eq!(
        c.jsonpath(
            &["pod", "survivor"],
            "{.status.containerStatuses[0].containerID}"
        ),
        before
    );
    assert_eq!(
        c.jsonpath(
            &["pod", "survivor"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
}

/// A second machine for the two-node test: a network namespace `capstan-n2` joined to the host by a
/// veth pair (host 192.168.251.1, node 192.168.251.2), in which a real `capstan agent` (with its own
/// containerd, CNI bridge, iptables and VXLAN device) runs. Dropped after the cluster: kills the
/// agent and its containerd and shims, deletes the namespace (and so the veth pair) and the host's
/// VXLAN device (and so the routes through it).
struct SecondNode {
    dir: std::path::PathBuf,
    agent: Option<std::process::Child>,
}

const NETNS: &str = "capstan-n2";
const HOST_IP: &str = "192.168.251.1";
const NODE2_IP: &str = "192.168.251.2";
/// Announced as node 2's ExternalIP (`--node-external-ip`); nothing routes to it.
const NODE2_EXTERNAL_IP: &str = "198.51.100.2";

fn sh(script: &str) {
    let out = std::process::Command::new("sh")
        .args(["-ec", script])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SecondNode {
    fn network(dir: std::path::PathBuf) -> SecondNode {
        // What an interrupted run left goes first.
        for args in [
            ["netns", "delete", NETNS].as_slice(),
            &["link", "del", "capstan-n2-h"],
        ] {
            let _ = std::process::Command::new("ip")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status();
        }
        sh(&format!(
            "ip netns add {NETNS}
             ip link add capstan-n2-h type veth peer name eth0 netns {NETNS}
             ip addr add {HOST_IP}/30 dev capstan-n2-h
             ip link set capstan-n2-h up
             ip netns exec {NETNS} sh -ec 'ip addr add {NODE2_IP}/30 dev eth0; ip link set eth0 up;
               ip link set lo up; ip route add default via {HOST_IP}'"
        ));
        SecondNode { dir, agent: None }
    }

    /// Starts `capstan agent` in the namespace. `nsenter --net` (not `ip netns exec`, which remounts
    /// /sys and so hides the host's cgroup mounts from runc) switches the network namespace only.
    fn start_agent(&mut self, port: u16, token: &str, backend: &str) {
        std::fs::create_dir_all(&self.dir).expect("agent dir");
        let log = std::fs::File::create(self.dir.join("agent.log")).expect("agent log");
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{NETNS}"))
            .arg(env!("CARGO_BIN_EXE_capstan"))
            .args(["agent", "--server", &format!("https://{HOST_IP}:{port}")])
            .args(["--token", token.trim(), "--node-name", NETNS])
            .args(["--node-external-ip", NODE2_EXTERNAL_IP])
            .args(["--flannel-backend", backend])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start capstan agent in the namespace");
        self.agent = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Puts the test images into the node's containerd. `ctr` runs on the host, where the registry
    /// (127.0.0.1:5000) is; inside the namespace 127.0.0.1 is the node's own loopback.
    fn preload(&self, images: &[&str]) {
        let socket = self.dir.join("data/agent/containerd/containerd.sock");
        for image in images {
            let out = std::process::Command::new("ctr")
                .arg("--address")
                .arg(&socket)
                .args([
                    "--namespace",
                    "k8s.io",
                    "images",
                    "pull",
                    "--plain-http",
                    image,
                ])
                .output()
                .expect("run ctr");
            assert!(
                out.status.success(),
                "ctr pull {image}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn stop_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::process::Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(self.dir.display().to_string())
            .status();
    }
}

impl Drop for SecondNode {
    fn drop(&mut self) {
        self.stop_agent();
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", NETNS])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", "flannel.1"])
            .status();
    }
}

/// The address busybox httpd's CGI saw the request come from (`[::ffff:10.42.0.5]` on its
/// dual-stack socket).
fn client_address(body: &str) -> String {
    body.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_start_matches("::ffff:")
        .to_owned()
}

#[test]
fn pods_on_two_nodes_reach_each_other_over_the_vxlan_overlay() {
    two_nodes("vxlan");
}

#[test]
fn pods_on_two_nodes_reach_each_other_over_host_gw_routes() {
    two_nodes("host-gw");
}

/// Two real nodes with the pod network's `backend`: pods and Services across them.
fn two_nodes(backend: &str) {
    let scratch = capstan_testkit::temp_dir().expect("temp dir");
    let mut node2 = SecondNode::network(scratch.path().join("node2"));
    let c = Cluster::start_with_agent_and_flags(&[
        "--bind-address",
        HOST_IP,
        "--flannel-backend",
        backend,
    ]);
    let token = std::fs::read_to_string(c.dir().join("data/token")).expect("join token");
    node2.start_agent(c.port(), &token, backend);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = c.run(&[
            "get",
            "node",
            NETNS,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        if String::from_utf8_lossy(&ready.stdout).trim() == "True" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 not Ready:\n{}",
            node2.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    node2.preload(&[HTTPSERVER, "127.0.0.1:5000/pause:3.10"]);
    let node1 = c
        .ok(&["get", "nodes", "-o", "name"])
        .lines()
        .map(|n| n.trim_start_matches("node/").to_owned())
        .find(|n| n != NETNS)
        .expect("the server's own node");

    assert_eq!(
        c.jsonpath(
            &["node", NETNS],
            "{.status.addresses[?(@.type==\"InternalIP\")].address} {.status.addresses[?(@.type==\"ExternalIP\")].address}"
        ),
        format!("{NODE2_IP} {NODE2_EXTERNAL_IP}")
    );
    // Each node publishes how it is reached (flannel's annotations).
    for (node, ip) in [(node1.as_str(), HOST_IP), (NETNS, NODE2_IP)] {
        let notes = c.jsonpath(&["node", node], "{.metadata.annotations}");
        let notes: serde_json::Value = serde_json::from_str(&notes).expect("annotations");
        assert_eq!(notes["flannel.alpha.coreos.com/backend-type"], backend);
        assert_eq!(notes["flannel.alpha.coreos.com/public-ip"], ip);
        let data = notes["flannel.alpha.coreos.com/backend-data"]
            .as_str()
            .unwrap_or_default();
        if backend == "vxlan" {
            assert_contains(data, "\"VtepMAC\":");
        } else {
            assert_eq!(data, "null");
        }
    }
    // The host's route to node 2's pods: through the tunnel, or straight to node 2.
    let cidr_b = c.jsonpath(&["node", NETNS], "{.spec.podCIDR}");
    let want = if backend == "vxlan" {
        format!(
            "via {} dev flannel.1",
            cidr_b.split('/').next().expect("network address")
        )
    } else {
        format!("via {NODE2_IP} dev capstan-n2-h")
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let route = std::process::Command::new("ip")
            .args(["route", "show", &cidr_b])
            .output()
            .expect("ip route");
        let route = String::from_utf8_lossy(&route.stdout).into_owned();
        if route.contains(&want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no route {want:?} to {cidr_b}: {route:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let pod = |name: &str, node: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\n\
             spec:\n  nodeSelector: {{kubernetes.io/hostname: {node}}}\n  containers:\n  \
             - name: web\n    image: {HTTPSERVER}\n    imagePullPolicy: IfNotPresent\n---\n\
             apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  \
             ports: [{{port: 80, targetPort: 8080}}]\n---\n"
        )
    };
    c.apply_stdin(&format!("{}{}", pod("a", &node1), pod("b", NETNS)));
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/a",
        "pod/b",
        "--timeout=60s",
    ]);
    let ip_a = c.jsonpath(&["pod", "a"], "{.status.podIP}");
    let ip_b = c.jsonpath(&["pod", "b"], "{.status.podIP}");
    assert!(
        cidr_b.starts_with(&ip_b.rsplit_once('.').expect("IPv4").0.to_string()),
        "pod b {ip_b} is in node 2's subnet {cidr_b}"
    );
    let fetch =
        |from: &str, url: &str| client_address(&c.ok(&["exec", from, "--", "wget", "-qO-", url]));

    // Pod to pod across the nodes, both ways: the other pod sees the sender's own address.
    assert_eq!(
        fetch("a", &format!("http://{ip_b}:8080/cgi-bin/client")),
        ip_a
    );
    assert_eq!(
        fetch("b", &format!("http://{ip_a}:8080/cgi-bin/client")),
        ip_b
    );
    // Through a Service found by its DNS name: the proxy picks the pod on the other node.
    assert_eq!(fetch("a", "http://b/cgi-bin/client"), ip_a);
    assert_eq!(
        fetch("b", "http://a.default.svc.cluster.local/cgi-bin/client"),
        ip_b
    );
    // From the host to node 2's pod: it comes from the host's end of the tunnel (vxlan) or of the
    // link to node 2 (host-gw).
    let cidr_a = c.jsonpath(&["node", &node1], "{.spec.podCIDR}");
    let host_end = if backend == "vxlan" {
        cidr_a.split('/').next().expect("network address")
    } else {
        HOST_IP
    };
    assert_eq!(
        client_address(&http_get(&ip_b, 8080, "/cgi-bin/client")),
        host_end
    );

    // A node that leaves takes its route with it.
    c.ok(&["delete", "pod", "b", "--grace-period=1", "--timeout=30s"]);
    node2.stop_agent();
    c.ok(&["delete", "node", NETNS]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let routes = std::process::Command::new("ip")
            .args(["route", "show", &cidr_b])
            .output()
            .expect("ip route");
        if String::from_utf8_lossy(&routes.stdout).trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "route to the deleted node's pods still there: {}",
            String::from_utf8_lossy(&routes.stdout)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(c);
}

/// The server restarts (killed, as a crash) under a joined agent: the agent's watches, which the
/// new server's cache cannot resume (410), list again; running pods are untouched, and pods and
/// Services created after the restart reach the node.
#[test]
fn a_joined_agent_carries_on_across_a_server_restart() {
    let mut c = Cluster::start();
    let agent_dir = c.dir().join("data/agent");
    let _agent = Agent::join(&c, &agent_dir, "joined-1", "agent.log");
    apply_web(&c, 1, "");
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=web",
        "--timeout=60s",
    ]);
    let before = c.jsonpath(
        &["pods", "-l", "app=web"],
        "{.items[0].status.containerStatuses[0].containerID}",
    );
    // Writes the old server's cache saw and the new one's window does not hold.
    for i in 0..5 {
        c.ok(&["create", "configmap", &format!("filler-{i}")]);
    }
    c.restart();
    c.ok(&[
        "run",
        "after",
        &format!("--image={BUSYBOX}"),
        "--restart=Never",
        "--",
        "echo",
        "after the restart",
    ]);
    wait_for(
        &c,
        &["pod", "after"],
        "{.status.phase}",
        |p| p == "Succeeded",
        Duration::from_secs(60),
    );
    assert_eq!(c.ok(&["logs", "after"]), "after the restart\n");
    c.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    let ip = c.jsonpath(&["service", "web"], "{.spec.clusterIP}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match try_http_get(&ip, 80, "/cgi-bin/hostname") {
            Ok(body) if body.trim().starts_with("web-") => break,
            other => assert!(
                Instant::now() < deadline,
                "the node's proxy never forwarded the new Service: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        c.jsonpath(
            &["pods", "-l", "app=web"],
            "{.items[0].status.containerStatuses[0].containerID}"
        ),
        before,
        "the running pod was restarted"
    );
}

/// Kubernetes' "Configure a Pod to Use a PersistentVolume for Storage" task: an administrator's
/// hostPath volume of class `manual`, a claim of that class, a pod using the claim. The claim binds
/// to the volume, the pod sees the host directory and writes to it, and once the claim is deleted
/// the volume is `Released` with the data kept (Retain).
#[test]
fn a_pod_uses_an_administrators_volume_through_its_claim() {
    let c = Cluster::start_with_agent();
    let dir = c.dir().join("pv-data");
    std::fs::create_dir_all(&dir).expect("volume dir");
    std::fs::write(dir.join("index.html"), "Hello from Kubernetes storage\n").expect("index");
    c.apply_stdin(&format!(
        "apiVersion: v1
kind: PersistentVolume
metadata:
  name: task-pv-volume
  labels: {{type: local}}
spec:
  storageClassName: manual
  capacity: {{storage: 10Gi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: {}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: task-pv-claim
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 3Gi}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: task-pv-pod
spec:
  volumes:
  - name: task-pv-storage
    persistentVolumeClaim: {{claimName: task-pv-claim}}
  containers:
  - name: web
    image: {HTTPSERVER}
    volumeMounts:
    - {{mountPath: /www, name: task-pv-storage}}
",
        dir.display()
    ));
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/task-pv-pod",
        "--timeout=60s",
    ]);
    let pv = c.ok(&["get", "pv", "task-pv-volume", "--no-headers"]);
    let columns: Vec<&str> = pv.split_whitespace().collect();
    assert_eq!(
        &columns[..7],
        [
            "task-pv-volume",
            "10Gi",
            "RWO",
            "Retain",
            "Bound",
            "default/task-pv-claim",
            "manual"
        ],
        "{pv}"
    );
    assert_eq!(
        c.jsonpath(
            &["pvc", "task-pv-claim"],
            "{.spec.volumeName} {.status.capacity.storage}"
        ),
        "task-pv-volume 10Gi"
    );
    let ip = c.jsonpath(&["pod", "task-pv-pod"], "{.status.podIP}");
    assert_eq!(http_get(&ip, 8080, "/"), "Hello from Kubernetes storage\n");
    c.ok(&[
        "exec",
        "task-pv-pod",
        "--",
        "sh",
        "-c",
        "echo written by the pod > /www/out.txt",
    ]);
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).expect("the pod's file on the host"),
        "written by the pod\n"
    );
    c.ok(&[
        "delete",
        "pod",
        "task-pv-pod",
        "--grace-period=1",
        "--timeout=30s",
    ]);
    c.ok(&["delete", "pvc", "task-pv-claim", "--timeout=30s"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.jsonpath(&["pv", "task-pv-volume"], "{.status.phase}") != "Released" {
        assert!(Instant::now() < deadline, "the volume was not released");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(dir.join("out.txt").exists(), "Retain keeps the data");
}

/// The interactive commands people reach for first: `kubectl port-forward` (to a deployment and to
/// a Service), `kubectl exec -i` with stdin, and `kubectl run -i --rm` (attach, then delete).
#[test]
fn port_forward_exec_with_stdin_and_run_attach_work() {
    let c = Cluster::start_with_agent();
    apply_web(&c, 1, "");
    c.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=web",
        "--timeout=60s",
    ]);
    let pod = c.jsonpath(&["pods", "-l", "app=web"], "{.items[0].metadata.name}");

    for target in ["deployment/web", "service/web"] {
        let port = capstan_testkit::free_port().expect("free port");
        // A Service's port 80 maps to the pod's 8080, as kubectl resolves it.
        let mapping = if target.starts_with("service") {
            format!("{port}:80")
        } else {
            format!("{port}:8080")
        };
        let forward = c.spawn_lines(&["port-forward", target, &mapping]);
        let lines = forward.lines_until(Duration::from_secs(20), |l| {
            l.iter()
                .any(|x| x.starts_with("Forwarding from 127.0.0.1:"))
        });
        assert!(
            lines
                .iter()
                .any(|x| x == &format!("Forwarding from 127.0.0.1:{port} -> 8080")),
            "{target}: {lines:?}"
        );
        for _ in 0..2 {
            assert_eq!(
                http_get("127.0.0.1", port, "/cgi-bin/hostname").trim(),
                pod,
                "{target}"
            );
        }
        drop(forward);
    }

    let out = c.ok_stdin(
        &[
            "exec",
            "-i",
            &pod,
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo done",
        ],
        "through stdin\n",
    );
    assert_eq!(out, "THROUGH STDIN\ndone\n");

    let out = c.ok_stdin(
        &[
            "run",
            "attached",
            "-i",
            "--rm",
            "--restart=Never",
            &format!("--image={BUSYBOX}"),
            "--",
            "sh",
            "-c",
            "read line; echo got $line",
        ],
        "ping\n",
    );
    assert_contains(&out, "got ping");
    // `--rm` deleted the pod once it ended.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.run(&["get", "pod", "attached"]).status.success() {
        assert!(Instant::now() < deadline, "the --rm pod is still there");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kubectl debug`: an ephemeral container joins a running pod (pods/ephemeralcontainers), runs once,
/// shows in the pod's status, serves logs and `kubectl attach`; one named like a container of the
/// pod is refused.
#[test]
fn kubectl_debug_adds_ephemeral_containers_to_a_running_pod() {
    let c = Cluster::start_with_agent();
    c.ok(&[
        "run",
        "target",
        &format!("--image={BUSYBOX}"),
        "--",
        "sleep",
        "3600",
    ]);
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/target",
        "--timeout=60s",
    ]);
    c.ok(&[
        "debug",
        "target",
        &format!("--image={BUSYBOX}"),
        "-c",
        "dbg",
        "--",
        "sh",
        "-c",
        "echo debugging; while true; do sleep 1; echo tick; done",
    ]);
    wait_for(
        &c,
        &["pod", "target"],
        "{.status.ephemeralContainerStatuses[0].state.running.startedAt}",
        |t| !t.is_empty(),
        Duration::from_secs(60),
    );
    assert_eq!(
        c.jsonpath(&["pod", "target"], "{.spec.ephemeralContainers[0].name}"),
        "dbg"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = c.ok(&["logs", "target", "-c", "dbg"]);
        if logs.starts_with("debugging\n") {
            break;
        }
        assert!(Instant::now() < deadline, "logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The pod's own container was not touched.
    assert_eq!(
        c.jsonpath(
            &["pod", "target"],
            "{.status.containerStatuses[0].restartCount} {.status.phase}"
        ),
        "0 Running"
    );

    // Attached to, the ephemeral container streams its output.
    let attached = c.spawn_lines(&["attach", "target", "-c", "dbg"]);
    let lines = attached.lines_until(Duration::from_secs(20), |l| {
        l.iter().filter(|x| *x == "tick").count() >= 2
    });
    assert!(
        lines.iter().filter(|x| *x == "tick").count() >= 2,
        "{lines:?}"
    );
    drop(attached);

    // With --target it shares the target container's process namespace: `ps` shows its sleep.
    c.ok(&[
        "debug",
        "target",
        &format!("--image={BUSYBOX}"),
        "-c",
        "peek",
        "--target=target",
        "--",
        "ps",
        "-o",
        "args",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = c.run(&["logs", "target", "-c", "peek"]);
        let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
        if logs.lines().any(|l| l.trim() == "sleep 3600") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ps in the target's namespace: {logs:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // A name the pod's own container has is refused, as kube-apiserver refuses it.
    let err = c.fails(&[
        "debug",
        "target",
        &format!("--image={BUSYBOX}"),
        "-c",
        "target",
    ]);
    assert_contains(
        &err,
        r#"The Pod "target" is invalid: spec.ephemeralContainers[2].name: Duplicate value: "target""#,
    );
}

/// `kubectl debug node/<name>`: a pod in the node's network, PID and IPC namespaces with the node's
/// root filesystem at /host (a host-network pod takes the node's hostname, which runc only allows
/// when none is set for it).
#[test]
fn kubectl_debug_node_runs_a_host_namespaced_pod() {
    let c = Cluster::start_with_agent();
    let node = c.jsonpath(&["nodes"], "{.items[0].metadata.name}");
    let out = c.ok(&[
        "debug",
        &format!("node/{node}"),
        &format!("--image={BUSYBOX}"),
        "--",
        "sh",
        "-c",
        "hostname; cat /host/proc/sys/kernel/hostname; test -d /host/etc && echo host root",
    ]);
    let pod = out
        .split_whitespace()
        .find(|w| w.starts_with("node-debugger-"))
        .unwrap_or_else(|| panic!("no debugging pod named in {out:?}"))
        .to_owned();
    wait_for(
        &c,
        &["pod", &pod],
        "{.status.phase}",
        |p| p == "Succeeded",
        Duration::from_secs(60),
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let host = host.trim();
    assert_eq!(
        c.ok(&["logs", &pod]),
        format!("{host}\n{host}\nhost root\n")
    );
    assert_eq!(
        c.jsonpath(
            &["pod", &pod],
            "{.spec.hostNetwork} {.spec.hostPID} {.status.podIP}"
        ),
        format!(
            "true true {}",
            c.jsonpath(&["node", &node], "{.status.addresses[0].address}")
        )
    );
}

/// Native sidecars (init containers with `restartPolicy: Always`, on by default since Kubernetes
/// 1.29): the sidecar starts first and keeps running beside the container, the pod is Ready with
/// both (`2/2`), the container reaches the sidecar over localhost, and a run-to-completion pod
/// still completes though its sidecar never exits.
#[test]
fn sidecar_init_containers_run_beside_the_containers() {
    let c = Cluster::start_with_agent();
    let pod = |name: &str, policy: &str, main: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: {policy}
  initContainers:
  - name: side
    image: {HTTPSERVER}
    restartPolicy: Always
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, '{main}']
"
        )
    };
    c.apply_stdin(&pod(
        "served",
        "Always",
        "until wget -qO- http://127.0.0.1:8080/cgi-bin/hostname; do sleep 0.2; done; sleep 3600",
    ));
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/served",
        "--timeout=60s",
    ]);
    let row = c.ok(&["get", "pod", "served", "--no-headers"]);
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[1..3], ["2/2", "Running"], "{row}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.ok(&["logs", "served", "-c", "main"]).trim() != "served" {
        assert!(Instant::now() < deadline, "main never reached its sidecar");
        std::thread::sleep(Duration::from_millis(200));
    }

    c.apply_stdin(&pod("job-like", "Never", "echo work done"));
    wait_for(
        &c,
        &["pod", "job-like"],
        "{.status.phase}",
        |p| p == "Succeeded",
        Duration::from_secs(60),
    );
    assert_eq!(c.ok(&["logs", "job-like", "-c", "main"]), "work done\n");
}

/// `kubectl autoscale` on a deployment whose pod spins: the autoscaler reads the pod's CPU from
/// metrics.k8s.io, finds it far above the target, and scales the deployment out to its maximum.
#[test]
fn an_autoscaler_scales_a_busy_deployment_out() {
    let c = Cluster::start_with_agent();
    c.apply_stdin(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: burn}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: burn}}}}
  template:
    metadata: {{labels: {{app: burn}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: spin
        image: {BUSYBOX}
        command: ["sh", "-c", "while true; do :; done"]
        resources: {{requests: {{cpu: 50m}}, limits: {{cpu: 150m}}}}
"#
    ));
    wait_for(
        &c,
        &["pods", "-l", "app=burn"],
        "{.items[*].status.phase}",
        |p| p == "Running",
        Duration::from_secs(60),
    );
    assert_eq!(
        c.ok(&[
            "autoscale",
            "deployment",
            "burn",
            "--min=1",
            "--max=3",
            "--cpu-percent=50"
        ])
        .trim(),
        "horizontalpodautoscaler.autoscaling/burn autoscaled"
    );
    // ~150m used of a 50m request is ~300% of it, six times the target: out to the maximum.
    wait_for(
        &c,
        &["deployment", "burn"],
        "{.spec.replicas}",
        |r| r == "3",
        Duration::from_secs(90),
    );
    let utilization = wait_for(
        &c,
        &["hpa", "burn"],
        "{.status.currentMetrics[0].resource.current.averageUtilization}",
        |u| u.parse::<u64>().is_ok_and(|u| u > 50),
        Duration::from_secs(30),
    );
    let table = c.ok(&["get", "hpa", "burn"]);
    assert_contains(&table, &format!("cpu: {utilization}%/50%"));
    let describe = c.ok(&["describe", "hpa", "burn"]);
    assert_contains(&describe, "SuccessfulRescale");
    assert_contains(
        &describe,
        "New size: 3; reason: cpu resource utilization (percentage of request) above target",
    );
    // Stop the spinning before the cluster goes.
    c.ok(&["delete", "deployment", "burn", "--wait=false"]);
}
