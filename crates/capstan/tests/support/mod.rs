//! End-to-end fixture: the real `capstan server` binary on a free loopback port with a fresh data dir,
//! driven by the real kubectl (`/usr/bin/kubectl`, or `$CAPSTAN_KUBECTL`).
//!
//! Every test starts its own server (nextest runs each test in its own process) and the server is
//! killed when the [`Cluster`] is dropped. kubectl always runs with `--kubeconfig` pointing at the
//! admin kubeconfig the server wrote, and with an environment that ignores the user's `KUBECONFIG`
//! and `~/.kube`, so nothing outside the test leaks in.
#![allow(dead_code)] // each test binary uses a different part of the fixture

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use capstan_testkit::TempDir;

/// How long the server gets to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The kubectl under test.
pub(crate) fn kubectl_bin() -> PathBuf {
    std::env::var_os("CAPSTAN_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"))
}

/// A running `capstan server --disable-agent`, killed on drop.
#[derive(Debug)]
pub(crate) struct Cluster {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    kubeconfig: PathBuf,
    /// A local agent runs: its pods must be stopped before the server goes.
    agent: bool,
    /// Extra `capstan server` flags, kept for a restart.
    flags: Vec<String>,
}

/// Starts `capstan server` with its data dir and log under `dir`.
fn spawn_server(dir: &Path, port: u16, agent: bool, flags: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("server log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_capstan"));
    command.arg("server");
    if !agent {
        command.arg("--disable-agent");
    }
    command
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--https-port")
        .arg(port.to_string());
    if !flags.iter().any(|f| f == "--bind-address") {
        command.arg("--bind-address").arg("127.0.0.1");
    }
    command
        .args(flags)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start capstan server")
}

impl Cluster {
    /// Starts the server and waits until `kubectl get --raw /readyz` prints `ok`.
    pub(crate) fn start() -> Cluster {
        Self::start_inner(false)
    }

    /// Starts the server without agent, with extra flags (e.g. `--node-monitor-grace-period 3s`).
    pub(crate) fn start_with_flags(flags: &[&str]) -> Cluster {
        Self::start_inner_with(false, flags)
    }

    /// Starts the server WITH its local agent (a real kubelet on a real containerd) and waits until
    /// the node is Ready. Tests using it must run one at a time (they share the host's CNI bridge):
    /// see the `node` test group in `.config/nextest.toml`.
    pub(crate) fn start_with_agent() -> Cluster {
        Self::start_with_agent_and_flags(&[])
    }

    /// [`Cluster::start_with_agent`] with extra server flags (e.g. `--bind-address`).
    pub(crate) fn start_with_agent_and_flags(flags: &[&str]) -> Cluster {
        let mut cluster = Self::start_inner_with(true, flags);
        cluster.agent = true;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = cluster.run(&[
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            if String::from_utf8_lossy(&out.stdout).trim() == "True" {
                return cluster;
            }
            assert!(
                Instant::now() < deadline,
                "node not Ready after 60 s; log:\n{}",
                cluster.server_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start_inner(agent: bool) -> Cluster {
        Self::start_inner_with(agent, &[])
    }

    fn start_inner_with(agent: bool, flags: &[&str]) -> Cluster {
        let dir = capstan_testkit::temp_dir().expect("temp dir");
        let port = capstan_testkit::free_port().expect("free port");
        let data_dir = dir.path().join("data");
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        let child = spawn_server(dir.path(), port, agent, &flags);
        let mut cluster = Cluster {
            child: Some(child),
            kubeconfig: data_dir.join("admin.kubeconfig"),
            dir,
            port,
            agent: false,
            flags,
        };
        cluster.wait_ready();
        cluster
    }

    /// Kills the server (as a crash would) and starts it again on the same data dir and port.
    /// Only for clusters without an agent.
    pub(crate) fn restart(&mut self) {
        assert!(!self.agent, "restart is for clusters without an agent");
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.child = Some(spawn_server(self.dir.path(), self.port, false, &self.flags));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "capstan server exited early ({status}); log:\n{}",
                    self.server_log()
                );
            }
            if self.kubeconfig.exists() {
                let out = self.run(&["get", "--raw", "/readyz"]);
                if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "capstan server not ready after {READY_TIMEOUT:?}; log:\n{}",
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The temporary directory holding the data dir, the server log and test files.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// What the server wrote to stderr so far.
    pub(crate) fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Writes `contents` to `name` in the test directory and returns its path.
    pub(crate) fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    /// A kubeconfig (written as `name` in the test dir) with the cluster's CA and `token` as the
    /// only credential.
    pub(crate) fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let admin = std::fs::read_to_string(self.kubeconfig()).expect("admin kubeconfig");
        let ca = admin
            .lines()
            .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
            .expect("CA data in the admin kubeconfig")
            .trim()
            .trim_matches('"')
            .to_owned();
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
            self.port
        );
        self.write_file(name, &config)
    }

    /// A kubectl command with the admin kubeconfig and an isolated environment.
    pub(crate) fn command(&self) -> Command {
        self.command_with(&self.kubeconfig)
    }

    /// A kubectl command with another kubeconfig (e.g. one without credentials).
    pub(crate) fn command_with(&self, kubeconfig: &Path) -> Command {
        let mut cmd = Command::new(kubectl_bin());
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .env_remove("KUBECONFIG")
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .env_remove("KUBE_EDITOR")
            .env_remove("EDITOR")
            // kubectl caches discovery under $HOME/.kube; keep it inside the test directory.
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl with `args` and returns what it printed, whatever the exit code.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run kubectl")
    }

    /// Runs kubectl with `stdin` fed to it.
    pub(crate) fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run_with_stdin(self.command(), args, stdin)
    }

    /// Runs kubectl, asserts it succeeded and returns its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        expect_ok(args, self.run(args))
    }

    /// Runs kubectl with `stdin`, asserts it succeeded and returns its stdout.
    pub(crate) fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        expect_ok(args, self.run_stdin(args, stdin))
    }

    /// Runs kubectl, asserts it failed and returns its stderr.
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        expect_failure(args, self.run(args))
    }

    /// Runs kubectl with `stdin`, asserts it failed and returns its stderr.
    pub(crate) fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        expect_failure(args, self.run_stdin(args, stdin))
    }

    /// `kubectl apply -f -` of `yaml`, asserted to succeed; returns stdout.
    pub(crate) fn apply_stdin(&self, yaml: &str) -> String {
        self.ok_stdin(&["apply", "-f", "-"], yaml)
    }

    /// Creates a namespace through `kubectl create -f -` (JSON body).
    pub(crate) fn create_namespace(&self, name: &str) {
        let out = self.ok_stdin(
            &["create", "-f", "-"],
            &format!("{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"{name}\"}}}}"),
        );
        assert_eq!(out.trim(), format!("namespace/{name} created"));
    }

    /// `kubectl get -o jsonpath=...` of one object.
    pub(crate) fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let flag = format!("-o=jsonpath={path}");
        let mut all: Vec<&str> = vec!["get"];
        all.extend_from_slice(args);
        all.push(&flag);
        self.ok(&all)
    }

    /// `kubectl get -o json` of one object, parsed.
    pub(crate) fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let text = self.ok(&all);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("kubectl printed bad JSON ({e}):\n{text}"))
    }

    /// Asserts the server still serves: `kubectl get ns` lists `default`.
    pub(crate) fn assert_serving(&self) {
        let out = self.ok(&["get", "ns", "-o", "name"]);
        assert!(
            out.lines().any(|l| l == "namespace/default"),
            "server no longer lists namespaces:\n{out}"
        );
    }

    /// Starts a long-running kubectl (e.g. a watch) whose stdout lines arrive on the returned channel.
    pub(crate) fn spawn_lines(&self, args: &[&str]) -> Spawned {
        let mut child = self
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Spawned { child, lines: rx }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.agent {
            // Let the kubelet stop every container (controllers first, so nothing is recreated).
            let _ = self.run(&[
                "delete",
                "deployments,replicasets,statefulsets,daemonsets,jobs",
                "--all",
                "--all-namespaces",
                "--wait=false",
            ]);
            let _ = self.run(&[
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=1",
                "--timeout=30s",
            ]);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.agent {
            // containerd and its shims outlive a killed server: stop the ones of this data dir.
            let pattern = self
                .dir
                .path()
                .join("data")
                .join("agent")
                .display()
                .to_string();
            let _ = Command::new("pkill")
                .arg("-9")
                .arg("-f")
                .arg(&pattern)
                .status();
        }
    }
}

/// A kubectl left running (a watch), killed on drop.
#[derive(Debug)]
pub(crate) struct Spawned {
    child: Child,
    lines: Receiver<String>,
}

impl Spawned {
    /// Collects stdout lines until `done` holds for the lines so far or `timeout` passes.
    pub(crate) fn lines_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        while !done(&lines) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_with_stdin(mut cmd: Command, args: &[&str], stdin: &str) -> Output {
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    let mut pipe = child.stdin.take().expect("piped stdin");
    let input = stdin.to_owned();
    // Write from a thread: a large body must not deadlock against kubectl's own output.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for kubectl");
    let _ = writer.join();
    out
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "kubectl {}\nexit: {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn expect_ok(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "expected success:\n{}",
        describe(args, &out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn expect_failure(args: &[&str], out: Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure:\n{}",
        describe(args, &out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `haystack` contains `needle`, showing both on failure.
#[track_caller]
pub(crate) fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected to find {needle:?} in:\n{haystack}"
    );
}

/// The header of a kubectl table, as words.
pub(crate) fn table_header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The rows of a kubectl table (after the header), split on whitespace.
pub(crate) fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// The demo application of the basic scenarios: a namespace, a ConfigMap, a Secret, a Deployment with
/// two env vars and a Service. `replicas` and `with_color` vary it for re-apply tests.
pub(crate) fn app_manifest(ns: &str, replicas: u32, with_color: bool) -> String {
    let color = if with_color {
        "        - name: COLOR\n          value: blue\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: {ns}
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  namespace: {ns}
type: Opaque
data:
  password: czNjcmV0
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
  labels:
    app: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        env:
        - name: MODE
          value: production
{color}        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {ns}
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
"
    )
}
